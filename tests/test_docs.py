"""The docs cannot drift from the code: the configuration page is the code's, every internal link resolves, and
the README's commands run as written (on tiny data), so a renamed flag fails here, not in a reader's terminal.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from svhn_sweep.core.data import SyntheticSource
from tests.conftest import REPO, TEST_SIZE, TRAIN_SIZE, cli_env

DOCS = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^(```|~~~).*?^\1\s*$", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|<img [^>]*src=\"([^\"]+)\"")
MARKER = "<!-- readme-test: offline -->"


# ---------------------------------------------------------------------------------------------------------------
# The configuration reference


def test_the_configuration_page_is_the_code_and_every_key_has_a_meaning() -> None:
    result = subprocess.run(
        [sys.executable, "docs/make_configuration.py", "--check"],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]


# ---------------------------------------------------------------------------------------------------------------
# Links


def github_anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation (not ``-``, ``_``) dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub makes for a page's headings (a repeated heading gets -1, -2, ...)."""
    found: set[str] = set()
    for line in FENCE.sub("", markdown).splitlines():
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = github_anchor(match.group(1))
            anchor, n = base, 0
            while anchor in found:
                n += 1
                anchor = f"{base}-{n}"
            found.add(anchor)
    return found


def broken_links(page: Path) -> list[str]:
    """The relative links and #anchors of a Markdown page that lead nowhere."""
    text = re.sub(r"`[^`\n]*`", "", FENCE.sub("", page.read_text()))  # links in code are not links
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    broken = []
    for match in LINK.finditer(text):
        target = match.group(1) or match.group(2)
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        path = (page.parent / path_part).resolve() if path_part else page
        if not path.exists():
            broken.append(f"{target} (no {path})")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path.read_text()):
            broken.append(f"{target} (no heading #{anchor} in {path.name})")
    return broken


@pytest.mark.parametrize("page", DOCS, ids=lambda page: str(page.relative_to(REPO)))
def test_every_internal_link_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_the_link_check_finds_a_missing_file_and_a_missing_heading(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other page\n\n## A `key=value` section (default)\n")
    page.write_text(
        "# Page\n\n[ok](other.md#a-keyvalue-section-default) [self](#page) [gone](missing.md) "
        "[no heading](other.md#nothing) ![img](pic.png) [web](https://example.org/x)\n"
        "```\n[in a code block](nowhere.md)\n```\n"
    )
    assert [link.split()[0] for link in broken_links(page)] == ["missing.md", "other.md#nothing", "pic.png"]


def test_the_readme_stays_short_and_keeps_its_ci_block() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    block = readme.split("<!-- ci:tests -->", 1)[1].split("```")[1]
    assert block.strip().splitlines()[-1] == "python -m pytest"


# ---------------------------------------------------------------------------------------------------------------
# The README's commands


def readme_blocks() -> list[tuple[str, str]]:
    """The README's code blocks that run offline, in order, as (language, text): those after the marker, and
    every Python block (none of them may go untested).
    """
    readme = (REPO / "README.md").read_text()
    blocks = []
    for match in re.finditer(r"(?P<marker><!-- [^>]*-->\n)?```(?P<lang>\w*)\n(?P<body>.*?)^```", readme, re.S | re.M):
        if match.group("marker") == MARKER + "\n" or match.group("lang") == "python":
            blocks.append((match.group("lang"), match.group("body")))
    return blocks


def readme_commands(body: str) -> list[list[str]]:
    """The svhn_sweep commands of a shell block, continuation lines joined and comments dropped."""
    commands = []
    for line in body.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words[:3] == ["python", "-m", "svhn_sweep"] or (words[:2] == ["python", "-m"] and "svhn_sweep." in words[2]):
            commands.append(words)
    return commands


# What the test changes in the README's commands to make them small, and nothing else: the data set's sizes (and
# where it is), and the epochs of trials and retrains.
EPOCHS = 1


def small(words: list[str], data_root: Path, sweep_dir: Path | None) -> list[str]:
    """A README command with only its sizes and epochs made small and ``<date_time>`` the newest sweep folder."""
    out = [sys.executable, *words[1:]]
    out = [re.sub(r"^((?:trainer|final)\.epochs)=\d+$", rf"\1={EPOCHS}", word) for word in out]
    if sweep_dir is not None:
        out = [re.sub(r"^outputs/sweeps/<date_time>$", str(sweep_dir), word) for word in out]
    if "data=synthetic" in out:
        out += [f"data.root={data_root}", f"data.train_size={TRAIN_SIZE}", f"data.test_size={TEST_SIZE}"]
    return out


def newest_sweep(cwd: Path) -> Path | None:
    sweeps = sorted((cwd / "outputs" / "sweeps").glob("*")) if (cwd / "outputs" / "sweeps").exists() else []
    return sweeps[-1] if sweeps else None


def test_the_readme_marks_the_commands_a_reader_needs() -> None:
    """The quick start, report, predict, final and the Python snippets are all among the blocks the slow test runs."""
    blocks = readme_blocks()
    modules = {words[2] for lang, body in blocks if lang != "python" for words in readme_commands(body)}
    assert {"svhn_sweep", "svhn_sweep.report", "svhn_sweep.predict", "svhn_sweep.final"} <= modules
    assert sum(lang == "python" for lang, _ in blocks) >= 2
    assert all(readme_commands(body) for lang, body in blocks if lang != "python"), "a marked block runs nothing"


@pytest.mark.slow
def test_the_readme_commands_run_offline(synthetic_root: Path, tmp_path: Path) -> None:
    """Every marked block and every Python block of the README, in order, in one folder, as a reader would run
    them after the quick start: the sweeps, report, predict, the final step again, the review and model snippets.
    """
    test = SyntheticSource(str(synthetic_root), train_size=TRAIN_SIZE, test_size=TEST_SIZE).load("test")
    Image.fromarray(np.ascontiguousarray(test.images[0].numpy().transpose(1, 2, 0))).save(tmp_path / "house7.png")
    ran = []
    for lang, body in readme_blocks():
        sweep_dir = newest_sweep(tmp_path)
        if lang == "python":
            assert sweep_dir is not None, "a Python block of the README comes before any sweep"
            source = re.sub(r"outputs/sweeps/<date_time>", str(sweep_dir), body)
            commands = [[sys.executable, "-c", source]]
        else:
            commands = [small(words, synthetic_root, sweep_dir) for words in readme_commands(body)]
        for command in commands:
            result = subprocess.run(command, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, f"{shlex.join(command)[:500]}\n{result.stderr[-3000:]}"
            ran.append(command[2] if lang != "python" else "python snippet")
    assert (newest_sweep(tmp_path) / "final-2" / "model.pt").exists()  # the README's last block retrained again
    assert ran.count("python snippet") >= 2
