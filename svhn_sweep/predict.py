"""``svhn-sweep-predict SWEEP_DIR IMAGE...``: the digit the sweep's final model sees in each image file, with its
probability (the ``--top K`` digits with ``--top``). Any image size or mode is converted as SVHN's crops are.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from svhn_sweep.constants import NUM_CLASSES
from svhn_sweep.core.errors import UserError
from svhn_sweep.review.cli import add_final_option, missing_study
from svhn_sweep.review.model import load_final_model


def _top(text: str) -> int:
    """``--top K``: how many digits to print per image, 1 to 10."""
    if not text.isdigit() or not 1 <= int(text) <= NUM_CLASSES:
        raise argparse.ArgumentTypeError(f"expected a number of digits from 1 to {NUM_CLASSES}; got {text!r}")
    return int(text)


def parser() -> argparse.ArgumentParser:
    """The command line of ``svhn-sweep-predict``."""
    cli = argparse.ArgumentParser(
        prog="svhn-sweep-predict",
        description="Classify image files with a sweep's final model (the retrained best config): "
        "the predicted digit and its probability per file.",
    )
    cli.add_argument("sweep_dir", type=Path, metavar="SWEEP_DIR", help="a finished sweep, outputs/sweeps/<date_time>")
    cli.add_argument("images", type=Path, nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...; any size)")
    cli.add_argument("--top", type=_top, default=1, metavar="K", help="print the K most probable digits (default 1)")
    add_final_option(cli)
    return cli


def read_image(path: Path) -> Image.Image:
    """The image in ``path``, decoded now (PIL opens lazily), so that a damaged file fails here and is named."""
    with Image.open(path) as image:
        image.load()
        return image


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: one line per image on stdout; a file that cannot be read gets one line on stderr and
    the others are still classified. Exit status 1 when some file could not be read, 2 when no model is there.
    """
    cli = parser()
    args = cli.parse_args(argv)
    try:
        final = load_final_model(args.sweep_dir, final_dir=args.final)
    except (UserError, FileNotFoundError) as error:  # no final model; not a sweep folder; a storage unusable
        cli.exit(2, f"{cli.prog}: error: {error}\n")
    except KeyError:
        cli.exit(2, f"{cli.prog}: error: {missing_study(args.sweep_dir)}\n")
    paths, images = [], []
    for path in args.images:
        try:
            images.append(read_image(path))
            paths.append(path)
        except (OSError, ValueError, Image.DecompressionBombError) as error:  # missing, a folder, not an image
            print(f"{cli.prog}: cannot read {path} as an image: {error}", file=sys.stderr)
    if images:
        best = final.probabilities(images).topk(args.top, dim=1)
        for path, values, digits in zip(paths, best.values.tolist(), best.indices.tolist(), strict=True):
            answers = [f"{digit} ({value:.3f})" for digit, value in zip(digits, values, strict=True)]
            print(f"{path}: " + "  ".join(answers))
    if len(images) < len(args.images):
        sys.exit(1)


if __name__ == "__main__":
    main()
