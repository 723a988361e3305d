"""The dataset card (OUT/README.md): Hugging Face's card form, written with dataset.json on every build, and
`datasets.load_dataset(OUT)` reads the corpus through its configs with the split sizes dataset.json states."""

from __future__ import annotations

import yaml

from pipeline.corpus.schema import card_features, features


def card(out) -> tuple[dict, str]:
    text = (out / "README.md").read_text()
    _, head, body = text.split("---\n", 2)
    return yaml.safe_load(head), body


def test_card_header_is_the_hub_form(mixed_corpus):
    head, body = card(mixed_corpus.out)
    index = mixed_corpus.index
    assert head["license"] == "other"  # CC-BY-4.0, CC0-1.0 and sources that gave none
    assert head["size_categories"] == ["n<1K"] and "text-to-image" in head["task_categories"]
    assert {"procedural-sequences", "portrait", "emoji"} <= set(head["tags"])
    files = {f["split"]: f["path"] for f in head["configs"][0]["data_files"]}
    assert files == {"train": "shards/train-*.tar", "validation": "shards/val-*.tar"}
    sizes = {s["name"]: s["num_examples"] for s in head["dataset_info"]["splits"]}
    assert sizes == {
        "train": index["splits"]["train"]["samples"],
        "validation": index["splits"]["val"]["samples"],
    }


def test_card_body_says_what_the_corpus_holds(mixed_corpus):
    _, body = card(mixed_corpus.out)
    index = mixed_corpus.index
    assert f"{index['samples']} step-by-step sequences of 4 task(s)" in body
    for task, c in index["per_task"].items():
        assert f"| `{task}` |" in body and f"| {c['total']} |" in body
    assert (
        "| `emoji` | Emoji | " in body
        and "2x2 serpentine, " in body
        and "3x3 serpentine, 1056x1056 px" in body
    )
    assert "`3*3 of 9 sub-images, step-by-step portrait painting process, {subject}`" in body
    assert "| `frames[].file` | string or null |" in body
    assert index["config_sha"] in body and "| 1 | " in body  # build history: run 1
    assert "| CC-BY-4.0 | Jane Painter, https://example.org/jane | 1 | 1 |" in body
    assert "| CC0-1.0 | not given | 1 | 1 |" in body


def test_card_features_are_the_exported_features():
    from datasets import Features

    assert Features._from_yaml_list(card_features()) == features()


def test_load_dataset_through_the_card_gives_dataset_json_split_sizes(mixed_corpus):
    from datasets import load_dataset

    index = mixed_corpus.index
    ds = load_dataset(str(mixed_corpus.out))
    assert {k: len(v) for k, v in ds.items()} == {
        "train": index["splits"]["train"]["samples"],
        "validation": index["splits"]["val"]["samples"],
    }
    assert ds["train"].features == features()
    row = ds["validation"][0]
    assert row["json"]["key"] == row["__key__"] and row["txt"] == row["json"]["caption"]["text"]
    stream = load_dataset(str(mixed_corpus.out), streaming=True)
    assert {k: sum(1 for _ in v) for k, v in stream.items()} == {k: len(v) for k, v in ds.items()}


def test_card_says_that_load_dataset_does_not_apply_curation_and_why_there_is_no_validation_split(
    mixed_corpus,
):
    import copy

    from pipeline.corpus.card import render
    from pipeline.taxonomy import Taxonomy

    index = copy.deepcopy(mixed_corpus.index)
    assert "curation.yaml` excludes" not in render(index, Taxonomy.load())  # nothing excluded: nothing said
    assert "No validation split" not in render(index, Taxonomy.load())
    keys = ["a_1", "b_2"]
    index["curation"]["excluded"] = {"drop": keys[:1], "hold-out": keys[1:]}
    del index["splits"]["val"]
    body = render(index, Taxonomy.load())
    assert "including the 2 that `curation.yaml` excludes" in body
    assert (
        "No validation split" in body
        and f"`shards.val_fraction` = {index['config']['shards']['val_fraction']}" in body
    )
