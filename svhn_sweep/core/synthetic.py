"""Procedural stand-in for SVHN's cropped-digit files (format 2).

The real SVHN files cannot be downloaded everywhere this project runs, so this module writes
``train_32x32.mat`` / ``test_32x32.mat`` in exactly the layout ``torchvision.datasets.SVHN`` reads
(``X`` uint8 ``(32, 32, 3, N)``, ``y`` uint8 ``(N, 1)`` with digit 0 stored as 10). The images imitate
house-number crops: a centred digit in one of several fonts, cut-off neighbouring digits, textured
backgrounds, varied contrast, small rotations, blur and noise, so that the data set is learnable but
clearly separates an MLP from a CNN.

Every random choice comes from a numpy ``Generator`` and all pixel arithmetic runs in float64, so a
given ``(size, seed)`` yields the same bytes on every run and machine (for the same numpy, torch,
pillow and matplotlib versions): float64 rounding differences between CPUs are far below the
1/255 quantisation step.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import matplotlib
import numpy as np
import scipy.io
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from svhn_sweep.constants import IMAGE_SHAPE, SPLIT_FILES
from svhn_sweep.core.files import atomic_write

IMAGE_SIZE = IMAGE_SHAPE[1]

# Matplotlib's bundled fonts with visibly different digit shapes (sans, mono, serif, italic, bold).
_FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
)
_TILE = 64  # side of one pre-rendered glyph tile, in tile pixels
_INK_HEIGHT = 40  # every glyph is scaled so its ink is this tall inside the tile
_TILE_REACH = 30.0  # sample coordinates are clamped here; the tile is blank beyond it
_CHUNK = 256  # images composed at once: keeps each float64 intermediate (~6 MB) cache-friendly
# SVHN's training-label counts for digits 0..9; mixed with uniform to give a mild skew towards 1 and 2.
_SVHN_COUNTS = np.array([4948, 13861, 10585, 8497, 7458, 6882, 5727, 5595, 5045, 4659], dtype=np.float64)
_LABEL_P = 0.6 / 10 + 0.4 * _SVHN_COUNTS / _SVHN_COUNTS.sum()
# Replaces the 116-byte text field of the MAT-5 header, which scipy fills with the current time.
_MAT_DESCRIPTION = b"MATLAB 5.0 MAT-file, synthetic SVHN stand-in written by svhn_sweep".ljust(116)


def write_synthetic_svhn(root: Path, train_size: int, test_size: int, seed: int) -> None:
    """Write train_32x32.mat and test_32x32.mat into root (creating it).

    Train and test are ``synthetic_split`` draws from children 0 and 1 of
    ``np.random.SeedSequence(seed).spawn(2)``, so changing ``test_size`` leaves the training images
    untouched. The files carry a fixed header instead of scipy's timestamp, so equal arguments give
    byte-identical files (and a stable md5).
    """
    if train_size < 0 or test_size < 0:
        raise ValueError(f"sizes must be non-negative, got train={train_size} test={test_size}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    train_seq, test_seq = np.random.SeedSequence(seed).spawn(2)
    for name, size, seq in ((SPLIT_FILES["train"], train_size, train_seq), (SPLIT_FILES["test"], test_size, test_seq)):
        images, labels = synthetic_split(size, np.random.default_rng(seq))
        svhn_labels = np.where(labels == 0, 10, labels).astype(np.uint8)[:, None]
        _save_mat_atomically(root / name, {"X": images.transpose(1, 2, 3, 0), "y": svhn_labels})


def synthetic_split(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``size`` digit labels (mildly skewed towards 1 and 2, like SVHN's) and render them.

    Returns uint8 images (N, 32, 32, 3) and int64 labels 0..9: the in-memory form of one file.
    """
    labels = rng.choice(10, size=size, p=_LABEL_P)
    return render_digits(labels, rng), labels


def render_digits(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return uint8 images (N, 32, 32, 3) of house-number crops for digit labels 0..9."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError("labels must be digits 0..9")
    images = np.empty((len(labels), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    with _all_cpu_threads():
        for start in range(0, len(labels), _CHUNK):
            images[start : start + _CHUNK] = _render_chunk(labels[start : start + _CHUNK], rng)
    return images


def _save_mat_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write a .mat whole or not at all, with a fixed header text instead of scipy's timestamp."""
    with atomic_write(path) as handle:
        scipy.io.savemat(handle, arrays, do_compression=False)
        handle.seek(0)
        handle.write(_MAT_DESCRIPTION)


@contextmanager
def _all_cpu_threads() -> Iterator[None]:
    """Use every core this process may run on for the torch kernels, then restore the caller's setting."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    previous = torch.get_num_threads()
    torch.set_num_threads(available)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@lru_cache(maxsize=1)
def _glyph_atlas() -> tuple[torch.Tensor, np.ndarray]:
    """Render each (font, digit) once into a row of soft alpha tiles, plus a final blank tile.

    Rendering text per sample would be orders of magnitude too slow; sampling the atlas with one
    batched ``grid_sample`` places all glyphs of a chunk at once. Returns the atlas as a float64
    tensor (1, 1, TILE, TILE * n_glyphs) and each glyph's ink width in tile pixels.
    """
    font_dir = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    tiles, widths = [], []
    for name in _FONTS:
        font = ImageFont.truetype(str(font_dir / name), 160)
        for digit in "0123456789":
            canvas = Image.new("L", (320, 320), 0)
            ImageDraw.Draw(canvas).text((80, 40), digit, font=font, fill=255)
            ink = canvas.crop(canvas.getbbox())
            width = round(ink.width * _INK_HEIGHT / ink.height)
            ink = ink.resize((width, _INK_HEIGHT), Image.Resampling.LANCZOS)
            tile = Image.new("L", (_TILE, _TILE), 0)
            tile.paste(ink, ((_TILE - width) // 2, (_TILE - _INK_HEIGHT) // 2))
            # Pre-blur so that bilinear sampling at 1.5-3x minification does not alias.
            tile = tile.filter(ImageFilter.GaussianBlur(1.0))
            tiles.append(np.asarray(tile, dtype=np.float64) / 255.0)
            widths.append(width)
    tiles.append(np.zeros((_TILE, _TILE)))
    widths.append(0)
    return torch.from_numpy(np.concatenate(tiles, axis=1))[None, None], np.array(widths, dtype=np.float64)


@lru_cache(maxsize=1)
def _blotch_basis() -> torch.Tensor:
    """Bicubic upsampling of a 4x4 grid to 32x32 as a (16, 1024) matrix: smooth low-frequency texture."""
    impulses = torch.eye(16, dtype=torch.float64).view(16, 1, 4, 4)
    size = (IMAGE_SIZE, IMAGE_SIZE)
    return F.interpolate(impulses, size=size, mode="bicubic", align_corners=False).view(16, -1)


def _random_colours(rng: np.random.Generator, luminance: np.ndarray, saturation: np.ndarray) -> np.ndarray:
    """RGB colours (N, 3) with the given mean luminance and a random hue of the given strength."""
    hue = rng.standard_normal((len(luminance), 3))
    hue -= hue.mean(axis=1, keepdims=True)
    hue /= np.linalg.norm(hue, axis=1, keepdims=True) + 1e-9
    return np.clip(luminance[:, None] + saturation[:, None] * hue, 0.0, 1.0)


def _column(values: np.ndarray) -> torch.Tensor:
    """Per-sample scalars as a (N, 1, 1, 1) float64 tensor that broadcasts over (N, C, H, W)."""
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64)).reshape(-1, 1, 1, 1)


def _blur(images: torch.Tensor, sigma: np.ndarray) -> torch.Tensor:
    """Separable Gaussian blur with a different sigma per image (7 taps, edge-replicated).

    Each image's blur is a (32, 32) banded matrix B, applied as B @ image @ B^T with batched
    matmuls: several times faster than shifting and adding the 7 taps.
    """
    taps = np.arange(-3, 4)
    weights = np.exp(-0.5 * (taps[None, :] / sigma[:, None]) ** 2)
    weights /= weights.sum(axis=1, keepdims=True)
    rows = np.arange(IMAGE_SIZE)
    shifts = np.zeros((len(taps), IMAGE_SIZE, IMAGE_SIZE))
    for k, tap in enumerate(taps):
        shifts[k, rows, np.clip(rows + tap, 0, IMAGE_SIZE - 1)] = 1.0
    band = torch.from_numpy(np.einsum("nk,kij->nij", weights, shifts))
    n = len(images)
    along_rows = images.reshape(n, 3 * IMAGE_SIZE, IMAGE_SIZE) @ band.transpose(1, 2)
    return band.unsqueeze(1) @ along_rows.view(n, 3, IMAGE_SIZE, IMAGE_SIZE)


def _render_chunk(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Compose one batch of crops; see the module docstring for the ingredients."""
    n = len(labels)
    atlas, glyph_width = _glyph_atlas()
    blank = len(glyph_width) - 1

    # Which glyph sits in the centre and in the (possibly empty) neighbouring slots of the same number.
    font = rng.integers(len(_FONTS), size=n)
    centre = font * 10 + labels
    left = np.where(rng.random(n) < 0.75, font * 10 + rng.integers(10, size=n), blank)
    right = np.where(rng.random(n) < 0.75, font * 10 + rng.integers(10, size=n), blank)
    gap = rng.uniform(0.5, 12.0, n)  # tile pixels between neighbouring glyphs

    # Per-sample geometry: output pixel -> glyph-tile coordinates q = M (u - shift).
    height = rng.uniform(13.0, 28.0, n)  # digit ink height in output pixels
    angle = np.deg2rad(np.clip(rng.normal(0.0, 5.0, n), -12.0, 12.0))
    shear = rng.uniform(-0.25, 0.25, n)
    aspect = rng.uniform(0.75, 1.3, n)
    shift = np.clip(rng.normal(0.0, 1.2, (n, 2)), -3.0, 3.0)
    zoom = _INK_HEIGHT / height
    cos, sin = np.cos(angle), np.sin(angle)
    m00, m01 = zoom * (cos + shear * sin) / aspect, zoom * (sin - shear * cos) / aspect
    m10, m11 = -zoom * sin, zoom * cos

    coords = torch.arange(IMAGE_SIZE, dtype=torch.float64) + 0.5 - IMAGE_SIZE / 2
    ux, uy = coords.view(1, 1, 1, -1), coords.view(1, 1, -1, 1)
    dx, dy = ux - _column(shift[:, 0]), uy - _column(shift[:, 1])
    qx = _column(m00) * dx + _column(m01) * dy
    qy = _column(m10) * dx + _column(m11) * dy

    half = glyph_width[centre] / 2
    is_left = qx < _column(-(half + gap / 2))
    is_right = qx > _column(half + gap / 2)
    glyph = torch.where(is_left, _column(left), torch.where(is_right, _column(right), _column(centre)))
    offset = torch.where(
        is_left,
        _column(-(half + gap + glyph_width[left] / 2)),
        torch.where(is_right, _column(half + gap + glyph_width[right] / 2), 0.0),
    )
    atlas_x = glyph * _TILE + _TILE / 2 + (qx - offset).clamp(-_TILE_REACH, _TILE_REACH)
    atlas_y = _TILE / 2 + qy.clamp(-_TILE_REACH, _TILE_REACH)
    grid = torch.stack([atlas_x * 2 / atlas.shape[-1] - 1, atlas_y * 2 / _TILE - 1], dim=-1)
    mask = F.grid_sample(atlas, grid.view(1, n * IMAGE_SIZE, IMAGE_SIZE, 2), align_corners=False)
    mask = mask.view(n, 1, IMAGE_SIZE, IMAGE_SIZE).clamp(0.0, 1.0)
    # Stroke weight (gamma < 1 thickens the soft edges) and ink opacity.
    mask = mask ** _column(np.exp(rng.uniform(np.log(0.6), np.log(1.7), n))) * _column(rng.uniform(0.8, 1.0, n))

    # Colours: background luminance anywhere, digit lighter or darker by a contrast that is sometimes low.
    bg_lum = rng.uniform(0.06, 0.94, n)
    contrast = np.where(rng.random(n) < 0.15, rng.uniform(0.1, 0.2, n), rng.uniform(0.2, 0.7, n))
    room_up, room_down = 0.98 - bg_lum, bg_lum - 0.02
    either_fits = (room_up >= contrast) & (room_down >= contrast)
    lighter = np.where(either_fits, rng.random(n) < 0.5, room_up > room_down)
    fg_lum = np.where(lighter, bg_lum + np.minimum(contrast, room_up), bg_lum - np.minimum(contrast, room_down))
    bg_col = _random_colours(rng, bg_lum, 0.3 * rng.random(n) ** 2)
    fg_col = _random_colours(rng, fg_lum, 0.35 * rng.random(n) ** 2)

    # Background texture: colour + gradient + low-frequency blotches + occasional stripes and edges.
    bg = torch.from_numpy(bg_col).view(n, 3, 1, 1)
    phi = rng.uniform(0.0, 2 * np.pi, n)
    ramp = (_column(np.cos(phi)) * ux + _column(np.sin(phi)) * uy) / (IMAGE_SIZE / 2)
    bg = bg + _column(rng.uniform(-0.15, 0.15, n)) * ramp
    blotches = torch.from_numpy(rng.standard_normal((n, 1, 16)) + 0.3 * rng.standard_normal((n, 3, 16)))
    blotches = (blotches @ _blotch_basis()).view(n, 3, IMAGE_SIZE, IMAGE_SIZE)
    bg = bg + _column(rng.uniform(0.0, 0.08, n)) * blotches

    psi = rng.uniform(0.0, 2 * np.pi, n)
    along = _column(np.cos(psi)) * ux + _column(np.sin(psi)) * uy
    stripes = torch.sin(2 * np.pi * along / _column(rng.uniform(3.0, 10.0, n)) + _column(rng.uniform(0, 2 * np.pi, n)))
    bg = bg + _column((rng.random(n) < 0.15) * rng.uniform(0.03, 0.12, n)) * (2 * stripes).clamp(-1, 1)

    # A wall/door edge somewhere off-centre, and the top/bottom border of a number plaque.
    edge = ((along - _column(rng.uniform(5.0, 15.0, n))) / _column(rng.uniform(0.4, 1.5, n)) + 0.5).clamp(0, 1)
    edge_col = torch.from_numpy(_random_colours(rng, rng.uniform(0.05, 0.95, n), 0.3 * rng.random(n) ** 2))
    edge = edge * _column(rng.random(n) < 0.3)
    bg = bg * (1 - edge) + edge_col.view(n, 3, 1, 1) * edge
    across = -_column(sin) * dx + _column(cos) * dy
    margin = _column(height / 2 + rng.uniform(1.5, 8.0, n))
    plaque = ((across.abs() - margin) / _column(rng.uniform(0.4, 1.5, n)) + 0.5).clamp(0, 1)
    plaque_col = torch.from_numpy(_random_colours(rng, rng.uniform(0.05, 0.95, n), 0.3 * rng.random(n) ** 2))
    plaque = plaque * _column(rng.random(n) < 0.3)
    bg = bg * (1 - plaque) + plaque_col.view(n, 3, 1, 1) * plaque

    # Drop shadow on some numbers, then the digit itself.
    shadow = F.pad(mask, (1, 0, 1, 0))[..., :IMAGE_SIZE, :IMAGE_SIZE]
    bg = bg * (1 - _column((rng.random(n) < 0.2) * rng.uniform(0.3, 0.7, n)) * shadow)
    images = bg * (1 - mask) + torch.from_numpy(fg_col).view(n, 3, 1, 1) * mask

    # Camera: uneven lighting, defocus and sensor noise.
    phi = rng.uniform(0.0, 2 * np.pi, n)
    light = (_column(np.cos(phi)) * ux + _column(np.sin(phi)) * uy) / (IMAGE_SIZE / 2)
    images = images * (1 + _column(rng.uniform(0.0, 0.2, n)) * light)
    images = _blur(images, rng.uniform(0.3, 1.4, n))
    noise = torch.from_numpy(rng.standard_normal((n, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32))
    images = images + _column(rng.uniform(0.004, 0.04, n)) * noise.double()

    pixels = (images * 255).round_().clamp_(0, 255).to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).numpy()
