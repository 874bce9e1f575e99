"""Write ``docs/configuration.md`` from the code: every key of every config group and of ``hydra.sweeper.*``.

    python docs/make_configuration.py           # rewrite the page
    python docs/make_configuration.py --check   # exit 1 if the page differs from the code, or a key has no meaning

Nothing on the page is written by hand. The groups and their options are Hydra's own view (the ConfigStore and
``svhn_sweep/conf/``, through Hydra's config loader), so an option or a key added to a dataclass or a YAML file
appears with no edit here. For a dataclass option, a key's type is its annotation, its default the value stored
in the ConfigStore, and its meaning the comment block above the field (or at the end of its line) in the class
that defines it or in a subclass; a subclass documents an inherited field it does not redefine with a comment
that starts ``# <field>:``; a comment above a run of fields (no blank line between) covers each of them.
Fields of the official samplers, and pruner arguments, that carry no comment point to the Optuna page of the class
they build. For a YAML option, the keys are the file's (under its ``# @package``) and the meanings
its comments. ``tests/test_docs.py`` runs ``--check``.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import inspect
import re
import sys
import textwrap
import typing
from enum import Enum
from pathlib import Path
from typing import Any

from hydra import initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.plugins.config_source import ConfigLoadError
from omegaconf import DictConfig, OmegaConf

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # this checkout's code, also when run as `python docs/make_configuration.py`

import hydra_plugins.svhn_sweep_optuna.config as sweeper_config  # noqa: E402  (registers hydra/sweeper nodes)
from svhn_sweep.sweep.config import CONFIG_DIR, register_configs  # noqa: E402

PAGE = REPO / "docs" / "configuration.md"
PRIMARY = "train"
SWEEPER = ("hydra/sweeper", "svhn_optuna")
SAMPLERS = "hydra/sweeper/sampler"
LAUNCHERS = "hydra/launcher"
SKIPPED = {"defaults"}  # a dataclass's defaults list is Hydra's wiring, not a key
URL = re.compile(r"https?://\S+")


@dataclasses.dataclass
class Key:
    """One row of the page."""

    name: str
    type: str
    default: str
    meaning: str


# ---------------------------------------------------------------------------------------------------------------
# Reading comments


def _comment_block(lines: list[str], index: int) -> str:
    """The ``#`` lines right above ``lines[index]`` (none blank between), joined; ``# @package`` excluded."""
    block: list[str] = []
    i = index - 1
    while i >= 0 and lines[i].strip().startswith("#"):
        block.insert(0, lines[i].strip().lstrip("#").strip())
        i -= 1
    return " ".join(line for line in block if not line.startswith("@package"))


def _inline_comment(line: str) -> str:
    """The ``# comment`` at the end of a line of code (a ``#`` inside quotes is not one)."""
    quote = None
    for i, char in enumerate(line):
        if char in "'\"":
            quote = None if quote == char else (quote or char)
        elif char == "#" and quote is None:
            return line[i + 1 :].strip()
    return ""


class ClassComments:
    """The annotations and comments of the fields a class body declares, and its ``# name:`` notes."""

    def __init__(self, cls: type) -> None:
        source = textwrap.dedent(inspect.getsource(cls))
        lines = source.splitlines()
        (body,) = ast.parse(source).body
        assert isinstance(body, ast.ClassDef)
        self.annotations: dict[str, str] = {}
        self.comments: dict[str, str] = {}
        previous: tuple[int, str] = (-1, "")  # last line and comment of the field before
        for node in body.body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                name = node.target.id
                self.annotations[name] = ast.unparse(node.annotation)
                above = _comment_block(lines, node.lineno - 1)
                inline = _inline_comment(lines[node.end_lineno - 1])
                comment = " ".join(part for part in (above, inline) if part)
                if not comment and node.lineno == previous[0] + 1:  # a comment above a run of fields covers it
                    comment = previous[1]
                self.comments[name] = comment
                previous = (node.end_lineno or node.lineno, comment)
        # '# study_name: ...' blocks documenting inherited fields, each up to the next such block or blank line
        self.notes: dict[str, str] = {}
        fields = {field.name for field in dataclasses.fields(cls)}
        note: list[str] | None = None
        for line in lines:
            match = re.match(r"\s*#\s*(\w+):\s*(.*)", line)
            if match and match.group(1) in fields:
                note = [match.group(2)]
                self.notes[match.group(1)] = ""
                name = match.group(1)
            elif note is not None and line.strip().startswith("#"):
                note.append(line.strip().lstrip("#").strip())
            else:
                note = None
            if note is not None:
                self.notes[name] = " ".join(note)


def _comments(cls: type) -> ClassComments:
    if cls not in _CACHE:
        _CACHE[cls] = ClassComments(cls)
    return _CACHE[cls]


_CACHE: dict[type, ClassComments] = {}


def field_meaning(cls: type, name: str) -> str:
    """The comment of field ``name`` of dataclass ``cls``: the nearest class in the MRO that has one."""
    for klass in cls.__mro__:
        if not dataclasses.is_dataclass(klass):
            continue
        comments = _comments(klass)
        if comments.comments.get(name):
            return comments.comments[name]
        if comments.notes.get(name):
            return comments.notes[name]
    return argument_of(getattr(cls, "_target_", ""), name, cls)


def argument_of(target: Any, name: str, cls: type | None = None) -> str:
    """A key with no comment that is an argument of an Optuna class: the link to that class's page (the one
    the dataclass's docstring gives, else Optuna's reference by name).
    """
    docs = [inspect.getdoc(klass) or "" for klass in (cls.__mro__ if cls else ())]
    url = next((match.group(0) for doc in docs if (match := URL.search(doc))), None)
    if url is None and isinstance(target, str) and target.startswith("optuna."):
        url = f"https://optuna.readthedocs.io/en/stable/reference/generated/{target}.html"
    return f"the `{name}` argument of [`{target}`]({url})" if url else ""


def field_type(cls: type, name: str) -> str:
    """The field's annotation as written; an enum's values."""
    hint = typing.get_type_hints(cls).get(name)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return " \\| ".join(f"`{member.name}`" for member in hint)
    for klass in cls.__mro__:
        if dataclasses.is_dataclass(klass) and name in _comments(klass).annotations:
            return code(_comments(klass).annotations[name])
    return ""


# ---------------------------------------------------------------------------------------------------------------
# Values


def value_text(value: Any) -> str:
    """A value as it is written in a Hydra override: ``null``, ``true``, ``[100]``, ``{a:1}``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(value_text(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{key}:{value_text(item)}" for key, item in value.items()) + "}"
    if value == "":
        return "''"
    return str(value)


def cell(text: str) -> str:
    """Text for a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def code(text: str) -> str:
    """Inline code for a table cell (a cell's ``|`` must stay escaped inside backticks too)."""
    return f"`{cell(text)}`" if text else ""


def table(keys: list[Key]) -> list[str]:
    """The keys as a Markdown table."""
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    rows += [f"| `{k.name}` | {k.type} | {k.default} | {cell(k.meaning)} |" for k in keys]
    return rows


# ---------------------------------------------------------------------------------------------------------------
# Options


def dataclass_keys(node: DictConfig, prefix: str) -> tuple[list[Key], list[tuple[str, DictConfig]]]:
    """A structured node's keys (not ``_target_`` and friends), and its fields that are dataclasses themselves."""
    cls = OmegaConf.get_type(node)
    keys: list[Key] = []
    nested: list[tuple[str, DictConfig]] = []
    for field in dataclasses.fields(cls):
        name = field.name
        if name.startswith("_") or name in SKIPPED:
            continue
        child = node._get_node(name)
        if isinstance(child, DictConfig) and dataclasses.is_dataclass(OmegaConf.get_type(child)):
            nested.append((f"{prefix}{name}", child))
            continue
        if OmegaConf.is_missing(node, name):
            default = "chosen by its group"
        else:
            raw = OmegaConf.to_container(node, resolve=False)[name]
            default = code(value_text(raw))
        keys.append(Key(f"{prefix}{name}", field_type(cls, name), default, field_meaning(cls, name)))
    return keys, nested


def yaml_keys(path: Path, package: str, base: type | None = None) -> tuple[list[Key], Any]:
    """A YAML option's keys under its package, each with the comment above or beside it, and its ``_target_``.

    A key without a comment takes the meaning of the field it sets in ``base`` (the structured config the file
    builds on), or of the argument of the Optuna class the file builds; a search parameter is one.
    """
    lines = path.read_text().splitlines()
    comment_of: dict[str, str] = {}  # by dotted path in the file
    stack: list[tuple[int, str]] = []  # (indent, key) of the mappings the line is in
    for i, line in enumerate(lines):
        match = re.match(r"(\s*)([\w.]+):", line)
        if not match:
            continue
        indent = len(match.group(1))
        stack = [(level, key) for level, key in stack if level < indent] + [(indent, match.group(2))]
        above = _comment_block(lines, i) if i > _header_end(lines) else ""
        text = " ".join(part for part in (above, _inline_comment(line)) if part)
        if text:
            comment_of[".".join(key for _, key in stack)] = text
    config = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    assert isinstance(config, dict)
    config.pop("defaults", None)
    target = config.pop("_target_", None)
    rows: list[tuple[list[str], Any, str]] = []

    def walk(node: Any, trail: list[str]) -> None:
        searched = trail[-1:] == ["params"] or (not trail and package.endswith(".params"))
        if isinstance(node, dict) and node and not searched:
            for key, value in node.items():
                walk(value, [*trail, str(key)])
        elif isinstance(node, dict):  # a search space: one row per parameter
            rows.extend(([*trail, str(key)], value, "a searched parameter") for key, value in node.items())
        else:
            rows.append((trail, node, ""))

    walk(config, [])
    keys = []
    for trail, value, fallback in rows:
        paths = [".".join(trail[:end]) for end in range(len(trail), 0, -1)]
        meaning = next((comment_of[path] for path in paths if path in comment_of), "")
        if not meaning and base is not None and dataclasses.is_dataclass(base):
            meaning = field_meaning(base, trail[-1]) if trail[-1] in base.__dataclass_fields__ else ""
        meaning = meaning or argument_of(target, trail[-1]) or fallback
        name = ".".join([package, *trail] if package else trail)
        kind = "list" if isinstance(value, list) else type(value).__name__ if value is not None else ""
        keys.append(Key(name, code(kind), code(value_text(value)), meaning))
    return keys, target


def _header_end(lines: list[str]) -> int:
    """Index of the first line that is not a comment: the comments before it describe the whole file."""
    return next((i for i, line in enumerate(lines) if line.strip() and not line.strip().startswith("#")), len(lines))


def yaml_header(path: Path) -> tuple[str, str | None]:
    """The comment block a YAML option starts with, and its ``# @package`` (None: the group's path)."""
    lines = path.read_text().splitlines()
    head = lines[: _header_end(lines)]
    package = next((line.split("@package", 1)[1].strip() for line in head if "@package" in line), None)
    text = [line.strip()[1:] for line in head if "@package" not in line]
    return " ".join(line.strip() for line in text if not line.startswith("  ")), package  # indented: an example


def markdown(docstring: str) -> str:
    """A docstring's text for Markdown: RST's double backticks as single ones, paragraphs kept."""
    return docstring.replace("``", "`").strip()


def structured(path: str) -> DictConfig | None:
    """The ConfigStore's node at ``group/name`` as a structured config, or None."""
    try:
        node = ConfigStore.instance().load(f"{path}.yaml").node
    except ConfigLoadError:
        return None
    return node if OmegaConf.get_type(node) not in (None, dict) else None


def option_heading(group: str, name: str, default: str | None) -> str:
    """An option's heading text."""
    return f"`{group}={name}`" + (" (default)" if name == default else "")


def option_section(group: str, name: str, default: str | None, level: str) -> list[str]:
    """One option of a group: its heading, what it is, its keys."""
    out = [f"{level} {option_heading(group, name, default)}", ""]
    prefix = group.replace("hydra/", "hydra.").replace("/", ".")
    node = structured(f"{group}/{name}")
    if node is not None:
        cls = OmegaConf.get_type(node)
        target = node.get("_target_")
        ours = cls.__module__.startswith(("svhn_sweep", "hydra_plugins.svhn"))
        doc = markdown(inspect.getdoc(cls) or "") if ours else ""
        facts = [f"Builds `{target}`." if target and target != "???" else "", doc]
        text = " ".join(part for part in facts if part)
        out += [text, ""] if text else []
        keys, nested = dataclass_keys(node, f"{prefix}.")
        out += [*table(keys), ""] if keys else ["No keys of its own.", ""]
        for key_prefix, child in nested:
            child_keys, _ = dataclass_keys(child, f"{key_prefix}.")
            out += [*table(child_keys), ""]
        return out
    path = Path(CONFIG_DIR) / group / f"{name}.yaml"
    if not path.exists():
        return [*out, f"From {_provider(group, name)}: see its documentation.", ""]
    header, package = yaml_header(path)
    package = prefix if package is None else ("" if package == "_global_" else package)
    loaded = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    extends = [str(item) for item in (loaded or {}).get("defaults") or [] if item != "_self_"]
    base = next((structured(f"{group}/{item}") for item in extends), None)
    if base is None and package.split(".")[:2] == ["hydra", "sweeper"]:  # a search space sets sweeper keys
        base = structured("/".join(SWEEPER))
    keys, target = yaml_keys(path, package, OmegaConf.get_type(base) if base is not None else None)
    if len(keys) == 1 and not keys[0].meaning:
        keys[0].meaning = header
    where = f"File `svhn_sweep/conf/{group}/{name}.yaml`" + (f", on top of `{', '.join(extends)}`." if extends else ".")
    facts = [f"Builds `{target}`." if target else "", header, where]
    out += [" ".join(part for part in facts if part), ""]
    return out + ([*table(keys), ""] if keys else [])


def _provider(group: str, name: str) -> str:
    try:
        return f"`{ConfigStore.instance().load(f'{group}/{name}.yaml').provider}`"
    except ConfigLoadError:
        return "a Hydra plugin"


# ---------------------------------------------------------------------------------------------------------------
# The page


def primary_defaults() -> dict[str, str]:
    """The option each group of the primary config's defaults list chooses (``search: ${model}``: mlp)."""
    chosen: dict[str, str] = {}
    primary = OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / f"{PRIMARY}.yaml"), resolve=False)
    assert isinstance(primary, dict)
    for item in primary["defaults"]:
        if isinstance(item, dict):
            ((group, option),) = item.items()
            chosen[group.removeprefix("override ")] = str(option)
    return {
        group: chosen.get(option[2:-1], option) if str(option).startswith("${") else option
        for group, option in chosen.items()
    }


def groups(loader: Any, parent: str = "") -> list[str]:
    """Every config group under ``parent`` that has options, depth first; Hydra's own groups left out."""
    found: list[str] = []
    for name in loader.list_groups(parent):
        group = f"{parent}/{name}" if parent else name
        if group == "hydra":
            continue
        if loader.get_group_options(group):
            found.append(group)
        found += groups(loader, group)
    return found


def render() -> str:
    """The whole page."""
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR):
        loader = GlobalHydra.instance().config_loader()
        chosen = primary_defaults()
        out = [
            "# Configuration reference",
            "",
            "<!-- Generated by `python docs/make_configuration.py` from the dataclasses, the ConfigStore and",
            "     svhn_sweep/conf/. Do not edit: tests/test_docs.py fails when this page and the code disagree. -->",
            "",
            "Every key a run or a sweep reads, with its type, its default and what it means, generated from the code",
            "(`svhn_sweep/sweep/config.py`, `hydra_plugins/svhn_sweep_optuna/config.py`, `svhn_sweep/conf/`). Set any",
            "key on the command line (`trainer.epochs=8`), choose a group's option with `group=option`",
            "(`optimizer=adamw`), and print the composed config with `python -m svhn_sweep --cfg job`",
            "(`--cfg hydra` for the `hydra.*` part). How the keys are used: the [README](../README.md) and the",
            "pages beside this one.",
            "",
            "## The primary config",
            "",
            f"`svhn_sweep/conf/{PRIMARY}.yaml` chooses one option per group and wires them; the keys that belong to",
            "no group:",
            "",
            "| group | default | options |",
            "|---|---|---|",
        ]
        group_list = groups(loader)
        order = [g for g in chosen if g in group_list] + [g for g in group_list if g not in chosen]
        for group in order:
            options = ", ".join(
                f"[`{o}`](#{slug(option_heading(group, o, chosen.get(group)))})"
                for o in loader.get_group_options(group)
            )
            out.append(f"| `{group}` | `{chosen.get(group, '')}` | {options} |")
        out.append("")
        base = ConfigStore.instance().load("base_train.yaml").node
        keys, nested = dataclass_keys(base, "")
        out += [*table(keys), ""]
        for prefix, child in nested:
            cls = OmegaConf.get_type(child)
            out += [f"## `{prefix}`", "", markdown(inspect.getdoc(cls) or ""), ""]
            child_keys, _ = dataclass_keys(child, f"{prefix}.")
            out += [*table(child_keys), ""]
        for group in order:
            out += [f"## `{group}`", ""]
            for option in loader.get_group_options(group):
                out += option_section(group, option, chosen.get(group), "###")

        sweeper_group, sweeper_name = SWEEPER
        chooses = f"The sweeper `{sweeper_group}={sweeper_name}`, which {PRIMARY}.yaml chooses."
        out += ["## `hydra.sweeper`", "", chooses, ""]
        out += option_section(sweeper_group, sweeper_name, sweeper_name, "###")[2:]
        sampler_default = sweeper_config.SAMPLER_NODE
        out += [
            f"### `{SAMPLERS}`",
            "",
            "The sampler of the search, `svhn_tpe` unless another is chosen. The sweeper seeds it per trial from",
            "`hydra.sweeper.sampler.seed`, or else the run's `seed` (svhn_sweep/sweep/sampling.py).",
            "",
        ]
        for option in loader.get_group_options(SAMPLERS):
            out += option_section(SAMPLERS, option, sampler_default, "####")

        out += [
            f"## `{LAUNCHERS}`",
            "",
            "Who runs the trials: `basic` (Hydra's default, one after the other),",
            "`joblib` (worker processes on this machine), `submitit_local`, `submitit_slurm` (Hydra plugins with",
            "keys of their own) and this project's:",
            "",
        ]
        for option in loader.get_group_options(LAUNCHERS):
            if (Path(CONFIG_DIR) / LAUNCHERS / f"{option}.yaml").exists():
                out += option_section(LAUNCHERS, option, None, "###")

        primary_keys, _ = yaml_keys(Path(CONFIG_DIR) / f"{PRIMARY}.yaml", "")
        hydra_keys = [key for key in primary_keys if key.name.startswith("hydra.")]
        out += ["## Hydra settings of the primary config", "", f"What `{PRIMARY}.yaml` sets under `hydra`:", ""]
        out += [*table(hydra_keys), ""]
    GlobalHydra.instance().clear()
    return "\n".join(out).rstrip() + "\n"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (not ``-`` or ``_``), spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def undocumented(page: str) -> list[str]:
    """The keys of the page whose meaning is empty."""
    return [line.split("`")[1] for line in page.splitlines() if line.startswith("| `") and line.endswith("|  |")]


def main() -> None:
    """Write the page, or with ``--check`` compare it with the code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on a difference")
    args = parser.parse_args()
    page = render()
    missing = undocumented(page)
    if missing:
        print(
            f"Keys without a meaning (add a comment above the field): {', '.join(missing)}",
            file=sys.stderr,
        )
    if not args.check:
        PAGE.write_text(page)
        print(f"wrote {PAGE.relative_to(REPO)}")
        return
    current = PAGE.read_text() if PAGE.exists() else ""
    if current != page:
        diff = difflib.unified_diff(current.splitlines(), page.splitlines(), "docs/configuration.md", "the code", n=1)
        print("\n".join(diff), file=sys.stderr)
        print(
            "docs/configuration.md does not match the code: run `python docs/make_configuration.py`.",
            file=sys.stderr,
        )
    sys.exit(1 if current != page or missing else 0)


if __name__ == "__main__":
    main()
