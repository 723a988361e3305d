"""``OUT/README.md``: the corpus's Hugging Face dataset card, regenerated from ``dataset.json`` on every build,
refresh and curation change. Its YAML header's ``configs`` and ``dataset_info.features`` let
``datasets.load_dataset(OUT)`` load the shards with the sample schema, with no code of ours installed.
"""

from __future__ import annotations

import re

import yaml

from pipeline.corpus.curation import SELECTORS
from pipeline.corpus.schema import card_features, field_types
from pipeline.io.storage import Storage
from pipeline.taxonomy import Taxonomy

NAME = "README.md"
SPLITS = {"train": "train", "val": "validation"}  # dataset.json split -> Hugging Face split name
SHARE_ALIKE = re.compile(
    r"(?:-SA\b|ShareAlike|Share-Alike|Share Alike|\bGPL|\bAGPL|\bLGPL|\bODbL)", re.IGNORECASE
)
SIZE_BUCKETS = [
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
]


def size_category(n: int) -> str:
    return next((name for limit, name in SIZE_BUCKETS if n < limit), "n>10M")


def _license(index: dict) -> str:
    """One license id for the header when every sample shares it; else 'other' (the table says which)."""
    given = {(x["license"] or "").lower() for x in index.get("licenses", [])}
    if not given or given == {""}:
        return "unknown"
    return given.pop() if len(given) == 1 and "" not in given else "other"


def share_alike(licenses: list[dict]) -> list[str]:
    """Lines carrying share-alike licenses (CC BY-SA, GPL...) into the card with their attribution: the
    sequences are adaptations of those works, so they go out under the same license."""
    rows = [x for x in licenses if SHARE_ALIKE.search(x["license"] or "")]
    if not rows:
        return []
    return [
        "### Share-alike",
        "",
        "Sequences drawn from these sources are adaptations of works under a share-alike license: share "
        "them (and what you make from them) under the same license, crediting the original as below.",
        "",
        *(
            f"- {x['samples']} samples under {x['license']}: {x['attribution'] or 'attribution not given'}"
            for x in rows
        ),
        "",
    ]


def header(index: dict) -> dict:
    splits = [s for s in SPLITS if index["splits"].get(s, {}).get("samples")]
    tasks = sorted(index["per_task"])
    return {
        "pretty_name": "MakeAnything procedural sequences",
        "license": _license(index),
        "task_categories": ["text-to-image", "image-to-image"],
        "size_categories": [size_category(index["samples"])],
        "tags": ["procedural-sequences", "step-by-step", "makeanything", "webdataset", *tasks],
        "configs": [
            {
                "config_name": "default",
                "default": True,
                "data_files": [{"split": SPLITS[s], "path": f"shards/{s}-*.tar"} for s in splits],
            }
        ],
        "dataset_info": {
            "features": card_features(),
            # num_bytes: the tars' size (the Hub field asks for one; the card's table says so)
            "splits": [
                {
                    "name": SPLITS[s],
                    "num_bytes": index["splits"][s]["bytes"],
                    "num_examples": index["splits"][s]["samples"],
                }
                for s in splits
            ],
        },
    }


def _cell(v: object) -> str:
    return str(v if v is not None else "—").replace("|", "\\|").replace("\n", " ")


def _table(head: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + [
        "| " + " | ".join(_cell(v) for v in r) + " |" for r in rows
    ]


def _tasks(index: dict, taxonomy: Taxonomy) -> list[str]:
    rows = []
    for tid, c in index["per_task"].items():
        t = taxonomy.tasks.get(tid)
        lay = (
            f"{t.layout.rows}x{t.layout.cols} {t.layout.order}, {t.layout.size[0]}x{t.layout.size[1]} px"
            if t
            else "?"
        )
        rows.append(
            [
                f"`{tid}`",
                t.name if t else "?",
                t.head if t else "?",
                lay,
                c.get("train", 0),
                c.get("val", 0),
                c["total"],
            ]
        )
    return _table(["task", "name", "LoRA head", "layout", "train", "validation", "total"], rows)


def _captions(index: dict, taxonomy: Taxonomy) -> list[str]:
    rows = [
        [f"`{tid}`", f"`{taxonomy[tid].caption('{subject}')}`"]
        for tid in index["per_task"]
        if tid in taxonomy
    ]
    return _table(["task", "template caption (`{subject}` from the manifest)"], rows)


def _curation(index: dict) -> list[str]:
    cur = index.get("curation") or {}
    decisions = cur.get("decisions", [])
    if not decisions:
        return ["No curation decisions: every sample in the shards is part of the dataset."]
    excluded = cur["excluded"]
    lines = [
        f"`curation.yaml` holds {len(decisions)} decision(s). The shards still contain the samples they "
        f"exclude ({len(excluded['drop'])} dropped, {len(excluded['hold-out'])} held out); `dataset.json` "
        "lists their keys under `curation.excluded`, and makeanything's trainer and `evaluate` skip them. "
        "With `datasets`, filter them out:",
        "",
        "```python",
        "import json",
        "skip = set(sum(json.load(open('dataset.json'))['curation']['excluded'].values(), []))",
        "ds = ds.filter(lambda row: row['__key__'] not in skip)",
        "```",
        "",
    ]
    rows = [
        [f"{sel} `{d[sel]}`", d["action"], d["samples"], d["reason"], d["by"], d["at"]]
        for d in decisions
        for sel in [next(k for k in SELECTORS if k in d)]
    ]
    return lines + _table(["selector", "action", "samples", "reason", "by", "at"], rows)


def _unfiltered(index: dict) -> list[str]:
    """Said where the card tells how to load: `load_dataset` reads the shards, which still hold what curation
    excludes (shards are never rewritten for a decision), so its rows are more than the curated dataset's."""
    excluded = ((index.get("curation") or {}).get("excluded")) or {}
    n = len({k for keys in excluded.values() for k in keys})
    if not n:
        return []
    return [
        f"`load_dataset` returns every sample in the shards, including the {n} that `curation.yaml` "
        "excludes: filter them out as shown under Curation below.",
        "",
    ]


def _no_validation(index: dict) -> list[str]:
    """A small corpus can end up with no validation split (sources are split by hash): say so, and why."""
    if index["splits"].get("val", {}).get("samples"):
        return []
    fraction = (index.get("config") or {}).get("shards", {}).get("val_fraction", 0.05)
    return [
        "",
        f"No validation split: sources go to it by a hash of their content, a fraction `shards.val_fraction` "
        f"= {fraction} of them, and none of this corpus's {index['sources'].get('ok', 0)} sources with "
        "sequences fell into it. More sources (or a larger fraction, with `refresh --rebuild`) give one.",
    ]


def render(index: dict, taxonomy: Taxonomy) -> str:
    """The card's text: YAML header, then what the corpus is, counts, layouts, captions, schema, build, sources."""
    total, n_tasks = index["samples"], len(index["per_task"])
    split_rows = [
        [SPLITS.get(s, s), f"`shards/{s}-*.tar`", v["shards"], v["samples"], f"{v['bytes'] / 1e6:.1f} MB"]
        for s, v in index["splits"].items()
    ]
    history = [
        [
            h["run"],
            h["started"],
            h["version"],
            f"`{h['config_sha'][:12]}`",
            ", ".join(f"{k} {v}" for k, v in h["counts"].items()),
        ]
        for h in index["history"]
    ]
    licenses = [
        [x["license"] or "not given", x["attribution"] or "not given", x["sources"], x["samples"]]
        for x in index.get("licenses", [])
    ]
    schema = [[f"`{p}`", t] for p, t in field_types().items()]
    lines = [
        "---",
        yaml.safe_dump(header(index), sort_keys=False, allow_unicode=True).rstrip(),
        "---",
        "",
        "# MakeAnything procedural sequences",
        "",
        f"{total} step-by-step sequences of {n_tasks} task(s), built with makeanything {index['version']} "
        "(MakeAnything, arXiv 2502.01572). Each sample is one grid image that tiles the N steps of a making "
        "process (a painting, a LEGO model, a sketch...) in reading order, its caption, and a JSON record of "
        "where every step came from and why it was kept. Sources were split into train and validation by "
        "source, so every sequence of one video lands in the same split.",
        "",
        "## Loading",
        "",
        "```python",
        "from datasets import load_dataset",
        'ds = load_dataset("path/to/this/folder")               # splits from the configs above',
        'ds = load_dataset("path/to/this/folder", streaming=True)',
        "```",
        "",
        *_unfiltered(index),
        "Every sample is three WebDataset members sharing a key: `KEY.jpg` (the grid), `KEY.txt` (the caption), "
        "`KEY.json` (the record below).",
        "",
        "## Splits",
        "",
        *_table(["split", "files", "shards", "samples", "size"], split_rows),
        *_no_validation(index),
        "",
        "## Tasks and layouts",
        "",
        "Steps are laid out `serpentine` (row 1 left to right, row 2 right to left, ...; on 2x2 the paper's "
        "U-turn) or `raster`; `json.layout.positions[i]` is the (row, col) of step i+1.",
        "",
        *_tasks(index, taxonomy),
        "",
        "## Captions",
        "",
        "`KEY.txt` (= `json.caption.text`) is the training caption. Where a vision-language model annotated "
        "the sequence, `json.caption.process` and `json.caption.steps` hold its process caption and one line "
        "per step, and `KEY.txt` takes the paper's `<image-k>` form.",
        "",
        *_captions(index, taxonomy),
        "",
        "## Sample record (`KEY.json`)",
        "",
        "The same keys with the same types for every source kind; a value a kind lacks is null.",
        "",
        *_table(["field", "type"], schema),
        "",
        "## Curation",
        "",
        *_curation(index),
        "",
        "## Build",
        "",
        f"Format `{index['format']}`, build config `{index['config_sha']}` (the full config is in "
        "`dataset.json`). Sources: " + ", ".join(f"{k} {v}" for k, v in index["sources"].items()) + ".",
        "",
        *_table(["run", "started", "version", "config", "counts"], history),
        "",
        "## Sources: licenses and attributions",
        "",
        "As the manifests or the source packages gave them. Respect each source's license when you use its "
        "sequences.",
        "",
        *_table(["license", "attribution", "sources", "samples"], licenses),
        "",
        *share_alike(index.get("licenses", [])),
    ]
    return "\n".join(lines)


def write_card(storage: Storage, index: dict, taxonomy: Taxonomy) -> None:
    storage.write(NAME, render(index, taxonomy).encode("utf-8"))
