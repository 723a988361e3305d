"""The docs cover the interface: every option of every subcommand appears in README.md or docs/, and every
field of the build config and the training config appears in docs/CONFIG.md / docs/TRAINING.md."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import yaml
from pydantic import BaseModel

from makeanything.cli import parser
from pipeline.config import BuildConfig
from training.config import Config

ROOT = Path(__file__).resolve().parent.parent


def _docs() -> str:
    return "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Dotted paths of every leaf field (sections are walked, not listed)."""
    out = []
    for name, field in model.model_fields.items():
        inner = [
            t for t in (field.annotation, *getattr(field.annotation, "__args__", ())) if isinstance(t, type)
        ]
        section = next((t for t in inner if issubclass(t, BaseModel)), None)
        out += _fields(section, f"{prefix}{name}.") if section else [f"{prefix}{name}"]
    return out


def _mentioned(path: str, text: str) -> bool:
    """`section.field` written out, or the field in its section's table row or list (`field`)."""
    leaf = path.rsplit(".", 1)[-1]
    return path in text or re.search(rf"`{re.escape(leaf)}`", text) is not None


def test_every_option_of_every_subcommand_is_documented():
    docs = _docs()
    missing = [
        f"{name} {opt}"
        for name, sub in _subcommands().items()
        for action in sub._actions
        for opt in action.option_strings
        if opt.startswith("--") and opt != "--help" and not re.search(rf"{re.escape(opt)}(?![\w-])", docs)
    ]
    assert not missing, f"options not in README.md or docs/: {missing}"


def test_every_subcommand_has_a_description_and_every_option_a_help():
    bare = [
        f"{name} {a.option_strings or a.dest}"
        for name, sub in _subcommands().items()
        for a in sub._actions
        if not isinstance(a, argparse._HelpAction) and not a.help
    ]
    assert not bare, f"options without --help text: {bare}"
    assert not [name for name, sub in _subcommands().items() if not sub.description]


def _yaml_keys(text: str) -> set[str]:
    """Dotted key paths of every ```yaml block of a markdown file (CONFIG.md documents the config as one)."""
    keys: set[str] = set()

    def walk(node: object, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                keys.add(f"{prefix}{k}")
                walk(v, f"{prefix}{k}.")

    for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.S):
        walk(yaml.safe_load(block), "")
    return keys


def test_every_build_config_field_is_in_config_md():
    documented = _yaml_keys((ROOT / "docs" / "CONFIG.md").read_text())
    missing = [f for f in _fields(BuildConfig) if f not in documented]
    assert not missing, f"BuildConfig fields not in docs/CONFIG.md: {missing}"


def test_every_training_config_field_is_in_training_md():
    text = (ROOT / "docs" / "TRAINING.md").read_text()
    missing = [f for f in _fields(Config) if not _mentioned(f, text)]
    assert not missing, f"training config fields not in docs/TRAINING.md: {missing}"
