"""One sample-json schema for every source kind: what a build writes conforms to it, Hugging Face
`datasets` loads a corpus mixing video, folder and URL sources (map-style and streaming), a sample that
does not conform is refused with the field named, and docs/FORMAT.md documents every field."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import pytest

from pipeline.corpus.schema import SchemaError, conform, features, field_types
from pipeline.corpus.shards import Sample
from pipeline.taxonomy import Taxonomy
from testkit.samples import made_meta

DOCS = Path(__file__).resolve().parents[1] / "docs" / "FORMAT.md"


def read_metas(out: Path) -> dict[str, dict]:
    metas = {}
    for tar in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(tar) as t:
            for m in t.getmembers():
                if m.name.endswith(".json"):
                    metas[m.name[:-5]] = json.loads(t.extractfile(m).read())
    return metas


def shape(value):
    """The key tree of a json value with leaves reduced to their type (None where null)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__ if value is not None else None


def keys_only(value):
    if isinstance(value, dict):
        return {k: keys_only(v) for k, v in value.items()}
    if isinstance(value, list) and value and isinstance(value[0], (dict, list)):
        return [keys_only(value[0])]
    return None


def test_every_sample_has_the_same_keys_whatever_the_source_kind(mixed_corpus):
    metas = read_metas(mixed_corpus.out)
    kinds = {m["source"]["kind"] for m in metas.values()}
    assert kinds == {"video", "images"}
    assert any(m["source"]["uri"].startswith("http://127.0.0.1") for m in metas.values())
    assert len(metas) == 4  # astronaut, coffee (URL), cat and rocket folders; talk.mp4 is rejected
    trees = {json.dumps(keys_only(m), sort_keys=True) for m in metas.values()}
    assert len(trees) == 1, "sample json key trees differ between source kinds"
    for key, meta in metas.items():
        assert conform(meta) == meta, key
    video = next(m for m in metas.values() if m["source"]["id"] == "astro")
    folder = next(m for m in metas.values() if m["source"]["id"] == "cat")
    # a file name goes in its own field; a missing number is null where other kinds have a number
    assert [f["file"] for f in folder["frames"]] == [f"step_{i:02d}.png" for i in range(1, 10)]
    assert [f["source_frame"] for f in folder["frames"]] == list(range(9))
    assert all(isinstance(f["time"], float) and f["file"] is None for f in video["frames"])
    assert folder["source"]["fps"] is None and isinstance(video["source"]["fps"], float)
    assert folder["scores"]["process"]["crop"] is None and len(video["scores"]["process"]["crop"]) == 4
    assert video["source"]["license"] == "CC-BY-4.0" and video["source"]["attribution"].startswith("Jane")
    assert folder["source"]["license"] == "CC0-1.0" and folder["source"]["attribution"] is None
    assert video["caption"]["text"].endswith("an astronaut") and video["caption"]["steps"] is None


def test_load_dataset_webdataset_map_style_and_streaming(mixed_corpus):
    from datasets import load_dataset

    metas = read_metas(mixed_corpus.out)
    files = {"train": sorted(str(p) for p in (mixed_corpus.out / "shards").glob("*.tar"))}
    ds = load_dataset("webdataset", data_files=files, split="train", features=features())
    assert sorted(ds["__key__"]) == sorted(metas)
    for row in ds:
        assert row["json"] == metas[row["__key__"]]  # nothing lost or retyped on the way through Arrow
        assert (
            row["jpg"].size == tuple(row["json"]["layout"]["size"])
            and row["txt"] == row["json"]["caption"]["text"]
        )
    stream = load_dataset("webdataset", data_files=files, split="train", features=features(), streaming=True)
    assert sorted(r["json"]["key"] for r in stream) == sorted(metas)


def test_load_dataset_infers_one_schema_without_being_given_features(mixed_corpus, tmp_path):
    """The issue's call, with no `features=`: `datasets` infers the types from the first samples, which
    failed when one kind wrote `source_frame` as a name and another as a number. One tar holding every
    kind lets the inference see each kind's values."""
    from datasets import load_dataset

    one = tmp_path / "all.tar"
    with tarfile.open(one, "w") as dst:
        for tar in sorted((mixed_corpus.out / "shards").glob("*.tar")):
            with tarfile.open(tar) as src:
                for m in src.getmembers():
                    dst.addfile(m, src.extractfile(m))
    ds = load_dataset("webdataset", data_files={"train": [str(one)]}, split="train")
    assert len(ds) == 4 and {r["source"]["kind"] for r in ds["json"]} == {"video", "images"}
    assert {type(f["source_frame"]) for r in ds["json"] for f in r["frames"]} == {int}
    stream = load_dataset("webdataset", data_files={"train": [str(one)]}, split="train", streaming=True)
    assert len(list(stream)) == 4


def _valid() -> dict:
    task = Taxonomy.load()["emoji"]
    return made_meta(
        "emoji_x_s0",
        task.describe(),
        task.layout.describe(),
        "a caption",
        uri="x",
        sha256="0" * 64,
        kind="images",
    )


@pytest.mark.parametrize(
    "change,message",
    [
        (
            lambda m: m["frames"][0].update(source_frame="a.png"),
            "json.frames[0].source_frame: expected int64, got str",
        ),
        (lambda m: m["frames"][1].update(colour=1.0), "json.frames[1].colour: is not in the sample schema"),
        (lambda m: m["source"].pop("sha256"), "json.source.sha256: is null or missing"),
        (
            lambda m: m["scores"]["process"].update(kind="images"),
            "json.scores.process.kind: is not in the sample schema",
        ),
        (lambda m: m["source"].update(fps=True), "json.source.fps: expected float64, got bool"),
    ],
)
def test_a_sample_that_does_not_conform_is_refused_naming_the_field(change, message):
    meta = _valid()
    change(meta)
    with pytest.raises(SchemaError, match=re.escape(message)):
        Sample("emoji_x_s0", b"", "a caption", meta)


def test_conform_fills_nulls_and_makes_float_fields_floats():
    meta = _valid()
    del meta["source"]["fps"]
    meta["frames"][0]["time"] = 2
    out = conform(meta)
    assert (
        out["source"]["fps"] is None
        and out["frames"][0]["time"] == 2.0
        and isinstance(out["frames"][0]["time"], float)
    )
    with pytest.raises(SchemaError, match="not in its schema form"):
        Sample("emoji_x_s0", b"", "a caption", meta)  # the writer takes only what conform() returned


def test_format_md_documents_every_field_with_its_type():
    doc = DOCS.read_text()
    table = dict(re.findall(r"^\| `([^`]+)` \| ([^|]+?) \|", doc, flags=re.M))
    for member in ("KEY.jpg", "KEY.txt", "KEY.json"):
        table.pop(member)
    assert table == field_types()
