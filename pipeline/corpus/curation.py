"""Curation decisions that stick: ``OUT/curation.yaml``, one file next to the corpus, written by hand or by
``makeanything curate``. Shards are never rewritten for it. ``dataset.json`` lists the samples each
decision excludes; the trainer's loader skips every excluded sample, ``evaluate`` skips dropped ones
(a held-out task stays available for evaluation), a refresh does not build a dropped source again.

A decision selects by ``key`` (one sample), ``source`` (the manifest id, the content sha256 or its first
16 hex digits as used in keys, or the URI) or ``task``; its ``action`` is ``drop`` or ``hold-out``.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
from pathlib import Path
from typing import Literal

import fsspec
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from pipeline.io.storage import Storage

FILE = "curation.yaml"
Action = Literal["drop", "hold-out"]
SELECTORS = ("key", "source", "task")
HEADER = (
    "# Curation decisions for this corpus (docs/CURATION.md). One entry per decision: exactly one of\n"
    "# key / source / task, an action (drop | hold-out), a reason, who and when. Shards are never\n"
    "# rewritten; dataset.json lists what each decision excludes.\n"
)


class CurationError(ValueError):
    """curation.yaml cannot be used; the message names the file and the line at fault."""


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str | None = None
    source: str | None = None
    task: str | None = None
    action: Action = "drop"
    reason: str
    by: str
    at: str

    @field_validator("at", mode="before")
    @classmethod
    def _time(cls, v: object) -> object:
        return (
            v.isoformat() if isinstance(v, (dt.datetime, dt.date)) else v
        )  # YAML reads timestamps as datetimes

    @field_validator("reason", "by")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v

    @model_validator(mode="after")
    def _one_selector(self) -> Decision:
        given = [k for k in SELECTORS if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"give exactly one of key, source, task (got {', '.join(given) or 'none'})")
        return self

    @property
    def selector(self) -> tuple[str, str]:
        kind = next(k for k in SELECTORS if getattr(self, k))
        return kind, getattr(self, kind)

    def covers(self, key: str, task: str, source_names: set[str]) -> bool:
        kind, value = self.selector
        return {"key": value == key, "task": value == task, "source": value in source_names}[kind]


def source_names(key: str, task: str, sha256: str, uri: str) -> set[str]:
    """Every name a source selector may use for the source of ``key``: its id (the key's middle part),
    its sha256, the 16-digit prefix used in keys, and its URI."""
    middle = key[len(task) + 1 : key.rfind("_s")] if key.startswith(task + "_") and "_s" in key else ""
    return {n for n in (middle, sha256, sha256[:16], uri) if n}


class Curation(BaseModel):
    decisions: list[Decision] = []

    def sha(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(), sort_keys=True).encode()).hexdigest()

    def verdict(self, key: str, task: str, names: set[str]) -> Decision | None:
        """The decision that applies to a sample: a drop wins over a hold-out; None when it is kept."""
        hits = [d for d in self.decisions if d.covers(key, task, names)]
        return next((d for d in hits if d.action == "drop"), hits[0] if hits else None)

    def drops_source(self, task: str, names: set[str]) -> Decision | None:
        """A drop decision that removes a whole source (by source or task): a refresh does not build it."""
        return next(
            (
                d
                for d in self.decisions
                if d.action == "drop" and d.selector[0] != "key" and d.covers("", task, names)
            ),
            None,
        )

    def to_yaml(self) -> str:
        rows = [{k: v for k, v in d.model_dump().items() if v is not None} for d in self.decisions]
        return HEADER + yaml.safe_dump({"decisions": rows}, sort_keys=False, allow_unicode=True)


def _line(node: yaml.Node | None, item: int | None = None, field: str | None = None) -> int:
    """1-based line of decision ``item`` (and its ``field``) in the composed YAML."""
    if node is None or item is None:
        return (node.start_mark.line + 1) if node is not None else 1
    seq = (
        next((v for k, v in node.value if k.value == "decisions"), None)
        if isinstance(node, yaml.MappingNode)
        else None
    )
    if not isinstance(seq, yaml.SequenceNode) or item >= len(seq.value):
        return node.start_mark.line + 1
    entry = seq.value[item]
    if field and isinstance(entry, yaml.MappingNode):
        for k, _ in entry.value:
            if k.value == field:
                return k.start_mark.line + 1
    return entry.start_mark.line + 1


def parse(text: str, where: str = FILE) -> Curation:
    """Validate curation.yaml text; CurationError names ``where`` and the line at fault."""
    try:
        raw, node = yaml.safe_load(text), yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise CurationError(
            f"{where}:{(mark.line + 1) if mark else 1}: not valid YAML: {getattr(e, 'problem', None) or e}"
        ) from None
    if raw is None:
        return Curation()
    if not isinstance(raw, dict) or set(raw) != {"decisions"} or not isinstance(raw["decisions"], list):
        raise CurationError(
            f"{where}:{_line(node)}: expected a mapping with one key, `decisions:`, holding a list"
        )
    out = []
    for i, item in enumerate(raw["decisions"]):
        if not isinstance(item, dict):
            raise CurationError(
                f"{where}:{_line(node, i)}: decisions[{i}]: expected a mapping, got {type(item).__name__}"
            )
        try:
            out.append(Decision(**item))
        except ValidationError as err:
            first = err.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else None
            raise CurationError(
                f"{where}:{_line(node, i, field)}: decisions[{i}]"
                f"{'.' + field if field else ''}: {first['msg']}"
            ) from None
    return Curation(decisions=out)


def load(storage: Storage) -> Curation:
    """The corpus's decisions (none when there is no curation.yaml)."""
    try:
        text = storage.read(FILE).decode("utf-8")
    except FileNotFoundError:
        return Curation()
    return parse(text, f"{storage}/{FILE}")


def save(storage: Storage, curation: Curation) -> None:
    storage.write(FILE, curation.to_yaml().encode("utf-8"))


def decide(selector: str, value: str, action: Action, reason: str, by: str | None = None) -> Decision:
    return Decision(
        **{selector: value},
        action=action,
        reason=reason,
        by=by or getpass.getuser(),
        at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )


def resolve(curation: Curation, rows: list[dict]) -> dict:
    """dataset.json's ``curation`` section from the ledger rows of the live samples (each with sha256, uri,
    task and keys): the decisions with the samples each excludes, and the excluded keys by action."""
    excluded: dict[str, list[str]] = {"drop": [], "hold-out": []}
    per_decision = [0] * len(curation.decisions)
    per_task: dict[str, dict[str, int]] = {}
    index = {id(d): i for i, d in enumerate(curation.decisions)}
    for row in rows:
        for key in row["keys"]:
            d = curation.verdict(key, row["task"], source_names(key, row["task"], row["sha256"], row["uri"]))
            if d is None:
                continue
            excluded[d.action].append(key)
            per_decision[index[id(d)]] += 1
            counts = per_task.setdefault(row["task"], {"drop": 0, "hold-out": 0})
            counts[d.action] += 1
    return {
        "file": FILE,
        "sha": curation.sha(),
        "decisions": [
            {**{k: v for k, v in d.model_dump().items() if v is not None}, "samples": n}
            for d, n in zip(curation.decisions, per_decision)
        ],
        "excluded": {k: sorted(v) for k, v in excluded.items()},
        "per_task": dict(sorted(per_task.items())),
    }


def _corpus_root(shard_url: str) -> str | None:
    """The corpus folder of a shard written by a build (``ROOT/shards/NAME.tar``), else None."""
    parent, _, _ = shard_url.rpartition("/")
    root, _, folder = parent.rpartition("/")
    return root if folder == "shards" and root else None


class Exclusions:
    """Which samples of built corpora to skip, read from each corpus's dataset.json once per instance.

    ``actions``: ``("drop", "hold-out")`` for training, ``("drop",)`` for evaluation. Shards outside a
    corpus folder (``ROOT/shards/NAME.tar``), or of a corpus without dataset.json, are read whole.
    """

    TRAINING: tuple[str, ...] = ("drop", "hold-out")
    EVALUATION: tuple[str, ...] = ("drop",)

    def __init__(self, actions: tuple[str, ...]) -> None:
        self.actions = actions
        self._roots: dict[str, dict[str, str]] = {}

    def __call__(self, key: str, shard_url: str) -> str | None:
        """The action that excludes sample ``key`` of ``shard_url``, or None to keep it."""
        url = shard_url.removeprefix("file://")
        root = _corpus_root(url if "://" in url else Path(url).resolve().as_posix())
        if root is None:
            return None
        if root not in self._roots:
            self._roots[root] = _excluded_in(root)
        action = self._roots[root].get(key)
        return action if action in self.actions else None


def _excluded_in(root: str) -> dict[str, str]:
    """{key: action} that the corpus at ``root`` excludes (from its dataset.json; empty when it has none)."""
    try:
        with fsspec.open(f"{root}/dataset.json", "rb") as f:
            index = json.load(f)
    except FileNotFoundError:
        return {}
    section = index.get("curation") or {}
    _check_current(root, section)
    return {k: action for action, keys in section.get("excluded", {}).items() for k in keys}


def _check_current(root: str, section: dict) -> None:
    """A hand edit of curation.yaml that no build or `curate` has applied yet must not be silently ignored."""
    try:
        with fsspec.open(f"{root}/{FILE}", "rb") as f:
            current = parse(f.read().decode("utf-8"), f"{root}/{FILE}")
    except FileNotFoundError:
        current = Curation()
    if current.sha() != section.get("sha", Curation().sha()):
        raise CurationError(
            f"{root}/{FILE} changed since {root}/dataset.json was written: run "
            f"`makeanything curate {root}` to apply it"
        )
