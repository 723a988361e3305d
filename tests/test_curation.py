"""Curation decisions that stick: drop a key and a source, hold a task out, refresh, train a few tiny steps and
evaluate — the excluded samples never appear, the shards are never rewritten; undo and they come back
without a rebuild. A bad curation.yaml is exit 2 naming its line."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import skimage.data
import yaml

from evaluation.inputs import load_inputs
from evaluation.sequence import Sequence
from makeanything.cli import main
from pipeline.corpus.curation import CurationError, Exclusions
from pipeline.taxonomy import Taxonomy
from tests.mixed_corpus import write_steps
from tests.training_fixtures import one_thread, tiny_config  # noqa: F401 (one_thread: autouse)
from training.data import decoded, expand_shards
from training.loop import train


def shard_digests(out) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((out / "shards").glob("*.tar"))
    }


def trained_keys(out, steps: int = 4) -> set[str]:
    cfg = tiny_config([str(out)])
    cfg.train.steps, cfg.train.ckpt_every = steps, 1000
    records = train(cfg, out.parent / f"run-{steps}-{len(list(out.parent.iterdir()))}")
    return {k for r in records for k in r["keys"]}


def loader_keys(out) -> set[str]:
    from training.data import HeadResolver

    resolve = HeadResolver(Taxonomy.load(), {})
    return {s["key"] for s in decoded(expand_shards([str(out)]), resolve, 16, 2)}


def evaluated_keys(out) -> set[str]:
    return {
        s.source.rsplit(":", 1)[1]
        for s in load_inputs([str(out)], Taxonomy.load())
        if isinstance(s, Sequence)
    }


@pytest.fixture
def corpus(mixed_corpus, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(mixed_corpus.out, out)
    return out


def all_keys(out) -> set[str]:
    import tarfile

    keys = set()
    for p in (out / "shards").glob("*.tar"):
        with tarfile.open(p) as t:
            keys |= {m.name.split(".")[0] for m in t.getmembers()}
    return keys


def test_drop_hold_out_refresh_train_evaluate_and_undo(mixed_corpus, corpus, tmp_path, capsys):
    keys = all_keys(corpus)
    cat = next(k for k in keys if "_cat_" in k)
    astro = next(k for k in keys if "_astro_" in k)
    rocket = next(k for k in keys if "_rocket_" in k)
    before = shard_digests(corpus)

    assert (
        main(
            [
                "curate",
                str(corpus),
                "--drop",
                cat,
                "--reason",
                "a band of the photo is missing",
                "--by",
                "ann",
            ]
        )
        == 0
    )
    assert main(["curate", str(corpus), "--drop-source", "astro", "--reason", "no licence to train on"]) == 0
    assert main(["curate", str(corpus), "--hold-out", "emoji", "--reason", "zero-shot evaluation task"]) == 0
    capsys.readouterr()
    decisions = yaml.safe_load((corpus / "curation.yaml").read_text())["decisions"]
    assert [(d.get("key") or d.get("source") or d.get("task"), d["action"]) for d in decisions] == [
        (cat, "drop"),
        ("astro", "drop"),
        ("emoji", "hold-out"),
    ]
    assert (
        decisions[0]["by"] == "ann"
        and decisions[0]["reason"] == "a band of the photo is missing"
        and decisions[0]["at"]
    )
    index = json.loads((corpus / "dataset.json").read_text())
    assert index["curation"]["excluded"] == {"drop": sorted([cat, astro]), "hold-out": [rocket]}
    assert (
        "| key `" + cat + "` | drop | 1 | a band of the photo is missing | ann |"
        in (corpus / "README.md").read_text()
    )

    # a hand-written decision for a source the corpus has not seen yet: the refresh must not build it
    src = mixed_corpus.manifest.parent
    write_steps(tmp_path / "dropme", skimage.data.astronaut(), 4)
    write_steps(tmp_path / "newone", skimage.data.coffee(), 4)
    text = (corpus / "curation.yaml").read_text() + yaml.safe_dump(
        [
            {
                "source": "dropme",
                "action": "drop",
                "reason": "duplicate of another corpus",
                "by": "bob",
                "at": "2026-11-26T12:00:00+00:00",
            }
        ]
    )
    (corpus / "curation.yaml").write_text(text)
    with pytest.raises(
        CurationError, match="changed since .*dataset.json was written: run `makeanything curate"
    ):
        loader_keys(corpus)  # a hand edit nobody applied is an error, not silently ignored
    manifest = tmp_path / "more.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "sources": [
                    {"path": str(src / "astronaut.mp4"), "task": "portrait", "id": "astro"},
                    {"dir": str(tmp_path / "dropme"), "task": "emoji", "id": "dropme"},
                    {"dir": str(tmp_path / "newone"), "task": "emoji", "id": "newone"},
                ]
            }
        )
    )
    assert (
        main(
            ["refresh", str(manifest), "--out", str(corpus), "--config", str(mixed_corpus.config), "--quiet"]
        )
        == 0
    )
    report = json.loads((corpus / "report.json").read_text())
    row = next(r for r in report["sources"] if r["uri"].endswith("dropme"))
    assert row["status"] == "rejected" and "dropped by curation (source dropme, bob" in row["reason"]
    keys = all_keys(corpus)
    assert not any("_dropme_" in k for k in keys) and any("_newone_" in k for k in keys)
    assert {n: d for n, d in shard_digests(corpus).items() if n in before} == before  # never rewritten
    index = json.loads((corpus / "dataset.json").read_text())
    assert index["curation"]["excluded"]["drop"] == sorted([cat, astro])
    card = (corpus / "README.md").read_text()  # regenerated by the refresh: run 2, the new split sizes
    assert "| 2 | " in card and f"num_examples: {index['splits']['train']['samples']}" in card

    capsys.readouterr()
    assert main(["inspect", str(corpus), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["curation"] == {
        "decisions": 4,
        "dropped": 2,
        "held_out": 2,
    }  # rocket and newone (emoji)

    seen = trained_keys(corpus)
    assert seen and not seen & {cat, astro, rocket}, seen
    assert evaluated_keys(corpus) == keys - {
        cat,
        astro,
    }  # evaluate skips drops, still reads the held-out task

    assert main(["curate", str(corpus), "--undo", cat, "--undo", "astro", "--undo", "emoji"]) == 0
    assert loader_keys(corpus) == keys and evaluated_keys(corpus) == keys  # back, without a rebuild
    assert {n: d for n, d in shard_digests(corpus).items() if n in before} == before


@pytest.mark.parametrize(
    "text,line,message",
    [
        (
            "decisions:\n- key: a_b_s0\n  action: drop\n  reason: x\n  by: me\n  at: now\n"
            "- task: lego\n  action: delete\n"
            "  reason: x\n  by: me\n  at: now\n",
            8,
            "decisions[1].action: Input should be 'drop' or 'hold-out'",
        ),
        (
            "decisions:\n- key: a_b_s0\n  task: lego\n  reason: x\n  by: me\n  at: now\n",
            2,
            "give exactly one of key, source, task (got key, task)",
        ),
        ("decisions:\n- key: a_b_s0\n  reason: x\n  at: now\n", 2, "decisions[0].by: Field required"),
        (
            "decisions:\n- key: a_b_s0\n  reason: '  '\n  by: me\n  at: now\n",
            3,
            "decisions[0].reason: Value error, must not be empty",
        ),
        ("decisions: [\n", 2, "not valid YAML"),
    ],
)
def test_a_bad_curation_file_is_exit_2_with_the_line(corpus, capsys, text, line, message):
    (corpus / "curation.yaml").write_text(text)
    assert main(["curate", str(corpus)]) == 2
    err = capsys.readouterr().err
    assert f"curation.yaml:{line}:" in err and message in err, err


def test_curate_refuses_names_that_select_nothing(corpus, capsys):
    assert main(["curate", str(corpus), "--drop", "portrait_nobody_s0", "--reason", "x"]) == 2
    assert "no sample has key 'portrait_nobody_s0'" in capsys.readouterr().err
    assert main(["curate", str(corpus), "--drop-source", "nobody", "--reason", "x"]) == 2
    assert main(["curate", str(corpus), "--hold-out", "watercolor", "--reason", "x"]) == 2
    assert main(["curate", str(corpus), "--hold-out", "lego"]) == 2
    assert "--reason is required" in capsys.readouterr().err
    assert not (corpus / "curation.yaml").exists()


def test_exclusions_read_nothing_outside_a_corpus(tmp_path):
    assert Exclusions(Exclusions.TRAINING)("k_s0", str(tmp_path / "loose.tar")) is None
