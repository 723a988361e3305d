"""End to end on the tiny random Flux: train, resume, export to diffusers, merge, generate, DDP."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image
from safetensors.torch import load_file
from training_fixtures import TASKS, ddp_worker, one_thread, tiny_config, write_shards  # noqa: F401 (one_thread: autouse)

from training import cli, run
from training.export import export
from training.flux_model import load_flux
from training.generate import sample
from training.loop import Trainer, train

TRAIN_TASKS = ["painting", "clay-toys", "lego"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    write_shards(root / "train", TRAIN_TASKS, per_task=4, per_shard=3)
    write_shards(root / "val", ["painting", "clay-toys"], per_task=1, per_shard=2, prefix="val")
    return root


@pytest.fixture(scope="module")
def trained(shards, tmp_path_factory):
    """An 8-step run with validation, used by the export and generation tests."""
    cfg = tiny_config([str(shards / "train")], val_every=4)
    cfg.data.val_shards = [str(shards / "val")]
    run_dir = tmp_path_factory.mktemp("run") / "run"
    records = train(cfg, run_dir)
    return run_dir, records, cfg


def run_cli(*argv: str) -> int:
    p = argparse.ArgumentParser()
    cli.register(p.add_subparsers())
    args = p.parse_args(argv)
    return args.func(args)


def test_run_writes_checkpoints_logs_and_learns_only_seen_heads(trained):
    run_dir, records, _ = trained
    assert [r["step"] for r in records] == list(range(1, 9))
    assert all(np.isfinite(r["loss"]) for r in records)
    assert [r["step"] for r in records if "val_loss" in r] == [4, 8]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step-00000004", "step-00000008"]
    assert (run_dir / "loss.png").is_file() and any((run_dir / "tb").iterdir())
    assert len((run_dir / "losses.jsonl").read_text().splitlines()) == 8
    lora = load_file(run_dir / "checkpoints" / "step-00000008" / "lora.safetensors")
    name = "transformer_blocks.0.attn.to_q"
    for task in TRAIN_TASKS:
        assert lora[f"{name}.lora_B.{TASKS[task].head}"].abs().sum() > 0, task
    assert lora[f"{name}.lora_B.{TASKS['emoji'].head}"].abs().sum() == 0  # never in a batch


def test_resume_gives_the_same_losses(shards, trained, tmp_path):
    _, full, cfg = trained
    run_dir = tmp_path / "run"
    first = train(cfg, run_dir, until=4)
    assert [r["step"] for r in first] == [1, 2, 3, 4]
    rest = train(cfg, run_dir, resume=True)
    assert [r["step"] for r in rest] == [5, 6, 7, 8]
    for a, b in zip(full, first + rest):
        assert a["keys"] == b["keys"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)  # float tolerance
        assert a.get("val_loss", 0) == pytest.approx(b.get("val_loss", 0), rel=1e-4)
    logged = [json.loads(x)["step"] for x in (run_dir / "losses.jsonl").read_text().splitlines()]
    assert logged == list(range(1, 9))
    with pytest.raises(ValueError, match="already holds checkpoints"):
        Trainer(cfg, run_dir)


def _render(pipe, flux, seed=3):
    return sample(pipe, flux, "a lighthouse", (48, 48), 3, 1.0, seed, output_type="latent")


def test_exported_lora_loads_in_diffusers_and_matches_the_trained_head(trained, tmp_path):
    run_dir, _, _ = trained
    flux, lora, _, _ = run.load(run_dir)
    lora.use([TASKS["painting"].head])
    ours = _render(flux.pipeline(), flux)

    path = export(run_dir, "painting", tmp_path / "painting.safetensors")
    base = load_flux(run_dir / "base")
    pipe = base.pipeline()
    plain = _render(pipe, base)
    pipe.load_lora_weights(str(path))
    loaded = _render(pipe, base)
    assert (loaded - ours).abs().max() < 1e-5
    assert (loaded - plain).abs().max() > 1e-3

    other = export(run_dir, "clay-toys", tmp_path / "clay.safetensors")
    pipe2 = load_flux(run_dir / "base").pipeline()
    pipe2.load_lora_weights(str(other))
    assert (_render(pipe2, base) - loaded).abs().max() > 1e-3  # heads differ

    merged = export(run_dir, "painting", tmp_path / "merged", merge=True)
    mflux = load_flux(merged)
    assert (_render(mflux.pipeline(), mflux) - ours).abs().max() < 1e-5


def test_cli_train_export_generate(shards, trained, tmp_path, capsys):
    run_dir, _, _ = trained
    lora_file = tmp_path / "lego.safetensors"
    assert run_cli("export-lora", str(run_dir), "--task", "lego", "--out", str(lora_file)) == 0
    for source, task, rows in ((run_dir, "painting", 3), (lora_file, None, 3), (run_dir, "clay-toys", 2)):
        out = tmp_path / f"gen-{task}-{rows}-{source.name}"
        args = ["generate", str(source), "--prompt", "a fox", "--out", str(out), "--steps", "2"]
        assert run_cli(*args + (["--task", task] if task else [])) == 0
        grid = Image.open(out / "grid.png")
        assert grid.size == (rows * 16, rows * 16)
        assert len(list((out / "frames").glob("step-*.png"))) == rows * rows
        assert Image.open(out / "steps.gif").n_frames == rows * rows

    assert (
        run_cli("export-lora", str(run_dir), "--task", "nope", "--out", str(tmp_path / "x.safetensors")) == 2
    )
    assert "unknown task 'nope'" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: tiny\nlora: {rank: 0}\n")
    assert run_cli("train", str(bad), "--data", str(shards / "train"), "--out", str(tmp_path / "r")) == 2
    assert "rank" in capsys.readouterr().err

    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(tiny_config([]).dump())
    assert (
        run_cli(
            "train",
            str(cfg_file),
            "--data",
            str(shards / "train"),
            "--out",
            str(tmp_path / "r2"),
            "--steps",
            "2",
        )
        == 0
    )
    assert (tmp_path / "r2" / "checkpoints" / "step-00000002").is_dir()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_gloo_ranks_split_shards_and_stay_in_step(tmp_path):
    write_shards(tmp_path / "data", ["painting", "cook"], per_task=8, per_shard=2)  # shard n holds src n
    cfg = tiny_config([str(tmp_path / "data")], steps=4, ckpt_every=2)
    cfg.data.shuffle_buffer = 1  # 4 steps x 2 samples = exactly one epoch of each rank's 4 shards
    mp.spawn(
        ddp_worker,
        args=(2, _free_port(), cfg.model_dump_json(), str(tmp_path / "run"), str(tmp_path)),
        nprocs=2,
        join=True,
    )
    recs = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [len(r) for r in recs] == [4, 4]
    assert [x["loss"] for x in recs[0]] == [x["loss"] for x in recs[1]]  # averaged over ranks
    keys = [{k for x in r for k in x["keys"]} for r in recs]
    assert keys[0].isdisjoint(keys[1])
    shards_of = [{k.split("_src")[1][:3] for k in ks} for ks in keys]
    assert shards_of[0].isdisjoint(shards_of[1]) and len(shards_of[0] | shards_of[1]) == 8
    w = [load_file(tmp_path / f"rank{r}.safetensors") for r in range(2)]
    assert all(torch.equal(w[0][k], w[1][k]) for k in w[0])
    assert any(v.abs().sum() > 0 for k, v in w[0].items() if ".lora_B." in k)
    assert (tmp_path / "run" / "checkpoints" / "step-00000004" / "rng-rank1.pt").is_file()


def test_generate_output_is_what_evaluate_reads(trained, tmp_path):
    """generate -> evaluate end to end on the tiny model: `evaluate ours=GEN_DIR` scores the generated grid."""
    from makeanything.cli import main

    run_dir, _, _ = trained
    gen = tmp_path / "gen"
    assert (
        run_cli("generate", str(run_dir), "--task", "painting", "--prompt", "a fox", "--out", str(gen)) == 0
    )
    report = tmp_path / "eval"
    assert main(["evaluate", f"ours={gen}", "--out", str(report), "--no-clip"]) == 0
    rows = [json.loads(x) for x in (report / "sequences.jsonl").read_text().splitlines()]
    assert [(r["method"], r["task"], r["prompt"], r["frames"]) for r in rows] == [
        ("ours", "painting", "a fox", 9)
    ]
    assert not (report / "errors.jsonl").exists() or not (report / "errors.jsonl").read_text().strip()


def test_export_refuses_an_untrained_task_unless_forced_and_follows_the_umask(trained, tmp_path, capsys):
    run_dir, _, _ = trained
    out = tmp_path / "emoji.safetensors"
    assert run_cli("export-lora", str(run_dir), "--task", "emoji", "--out", str(out)) == 2
    assert "never trained task 'emoji'" in capsys.readouterr().err and not out.exists()
    assert run_cli("export-lora", str(run_dir), "--task", "emoji", "--out", str(out), "--force") == 0
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
    capsys.readouterr()
    merged = tmp_path / "merged"
    assert run_cli("export-lora", str(run_dir), "--task", "painting", "--out", str(merged), "--merge") == 0
    assert run_cli("generate", str(merged / "x"), "--prompt", "p", "--out", str(tmp_path / "g")) == 2
    assert run_cli("generate", str(out), "--prompt", "p", "--out", str(tmp_path / "g"), "--steps", "1") == 0
    err = capsys.readouterr().err
    assert (
        "Writing model shards" not in err and "Loading weights" not in err and "Loading pipeline" not in err
    )


def test_export_and_generate_check_arguments_before_loading_the_model(trained, tmp_path, capsys):
    """A copy of the run without its base model: a wrong argument is reported, not a failed load."""
    run_dir, _, _ = trained
    bare = tmp_path / "bare"
    shutil.copytree(run_dir, bare, ignore=shutil.ignore_patterns("base"))
    assert run_cli("export-lora", str(bare), "--out", str(tmp_path / "x.safetensors")) == 2
    assert "--task is required" in capsys.readouterr().err
    gen = ["generate", str(bare), "--prompt", "p", "--out", str(tmp_path / "g")]
    assert run_cli(*gen, "--head", "99") == 2
    assert "--head 99: this LoRA has heads 1 to" in capsys.readouterr().err
    assert run_cli(*gen, "--task", "nope") == 2
    assert "unknown task 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()
    for bad in (["--steps", "0"], ["--head", "0"]):
        with pytest.raises(SystemExit) as e:
            run_cli(*gen, *bad)
        assert e.value.code == 2 and "is not at least 1" in capsys.readouterr().err
