"""ReCraft on the tiny random Flux: condition cells from the layout, clean at every step, out of the loss."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from PIL import Image
from training_fixtures import frames, one_thread, tiny_config, write_shards  # noqa: F401 (one_thread: autouse)

from pipeline.layout import Layout
from pipeline.taxonomy import Taxonomy
from training import cli, run
from training import flow_matching as fm
from training.config import RecraftConfig
from training.export import export
from training.flux_model import load_flux
from training.generate import sample
from training.loop import Trainer, train
from training.recraft import condition_mask, run_recraft


def cell_block(layout: Layout, cell: tuple[int, int], tok: int) -> torch.Tensor:
    m = torch.zeros(layout.rows * tok, layout.cols * tok, dtype=torch.bool)
    m[cell[0] * tok : (cell[0] + 1) * tok, cell[1] * tok : (cell[1] + 1) * tok] = True
    return m.flatten()


@pytest.mark.parametrize(
    "layout",
    list({t.layout for t in Taxonomy.load().tasks.values()})
    + [Layout(rows=2, cols=3, cell=64, order="raster")],
    ids=str,
)
def test_condition_cell_is_the_layouts_final_cell(layout):
    final = condition_mask(layout, "final", layout.rows * 4, layout.cols * 4)
    assert torch.equal(final, cell_block(layout, layout.final_cell, 4))
    ends = condition_mask(layout, "interpolate", layout.rows * 4, layout.cols * 4)
    assert torch.equal(ends, final | cell_block(layout, layout.positions[0], 4))
    if (layout.rows, layout.cols, layout.order) == (2, 2, "serpentine"):
        assert layout.final_cell == (
            1,
            0,
        )  # the U-turn ends bottom-LEFT (the authors' code used bottom-right)
    if (layout.rows, layout.cols, layout.order) == (3, 3, "serpentine"):
        assert layout.final_cell == (2, 2)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("rc-shards")
    write_shards(root, ["painting", "clay-toys"], per_task=4, per_shard=2)
    return root


@pytest.fixture(scope="module")
def base_run(shards, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("rc-base") / "run"
    train(tiny_config([str(shards)], steps=3, ckpt_every=3), run_dir)
    return run_dir


def recraft_config(shards, base_run, task: str, mode: str = "final", **kw):
    cfg = tiny_config([str(shards)], **kw)
    cfg.model.model = "recraft"
    cfg.recraft = RecraftConfig(base_lora=str(base_run), task=task, mode=mode)
    return cfg


@pytest.fixture(scope="module")
def painting_run(shards, base_run, tmp_path_factory):
    cfg = recraft_config(shards, base_run, "painting", steps=4, ckpt_every=2)
    run_dir = tmp_path_factory.mktemp("rc") / "run"
    return run_dir, train(cfg, run_dir), cfg


@pytest.mark.parametrize("task", ["painting", "clay-toys"])
def test_training_and_inference_keep_the_same_cell_clean(shards, base_run, tmp_path, task):
    cfg = recraft_config(shards, base_run, task, steps=1, ckpt_every=1)
    train(cfg, tmp_path / "run")
    trainer = Trainer(cfg, tmp_path / "run", resume=True)
    batch = next(iter(trainer.loader()))
    assert set(batch["head"]) == {Taxonomy.load()[task].head}  # only the ReCraft task's samples
    p = trainer.prepare(batch)
    train_cond = ~p["mask"][0]
    assert torch.equal(p["x_t"][:, train_cond], p["x0"][:, train_cond])  # exactly the clean latent
    assert not torch.equal(p["x_t"][:, ~train_cond], p["x0"][:, ~train_cond])

    flux, lora, info, _ = run.load(tmp_path / "run")
    layout = Taxonomy.load()[task].layout
    given = frames(1, 7)[0].resize((40, 30))
    trace: list[torch.Tensor] = []
    grid = run_recraft(flux, lora, layout, info.cell, "final", [given], "x", 0, 4, 1.0, trace)
    assert len(trace) == 4
    steady = torch.stack([(s == trace[0]).all(-1)[0] for s in trace]).all(0)
    assert torch.equal(steady, train_cond)  # inference keeps exactly the cells training kept clean
    cell = info.cell
    r, c = layout.final_cell
    out = np.asarray(grid)[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell].astype(int)
    assert out.std() > 5 and np.asarray(grid).shape[:2] == (layout.rows * cell, layout.cols * cell)


def test_loss_ignores_the_condition_cell(painting_run):
    run_dir, _, cfg = painting_run
    trainer = Trainer(cfg, run_dir, resume=True)
    p = trainer.prepare(next(iter(trainer.loader())))
    pred = p["v"].clone().requires_grad_(True)
    loss = fm.loss(pred, p["v"] + 0.5, p["mask"])
    loss.backward()
    cond = ~p["mask"]
    assert pred.grad[cond].abs().max() == 0 and pred.grad[~cond].abs().min() > 0
    with torch.no_grad():
        bumped = pred.detach().clone()
        bumped[cond] += 100.0
        assert fm.loss(bumped, p["v"] + 0.5, p["mask"]) == pytest.approx(loss.item())


def test_resume_gives_the_same_losses(shards, base_run, painting_run, tmp_path):
    _, full, cfg = painting_run
    part = train(cfg, tmp_path / "run", until=2) + train(cfg, tmp_path / "run", resume=True)
    assert [r["keys"] for r in part] == [r["keys"] for r in full]
    assert [r["loss"] for r in part] == pytest.approx([r["loss"] for r in full], rel=1e-4)  # float tolerance


def test_export_loads_in_diffusers_on_the_merged_base(painting_run, tmp_path):
    run_dir, _, _ = painting_run
    flux, lora, info, _ = run.load(run_dir)
    lora.use([1])
    prompt, size = "a painting", (48, 48)
    ours = sample(flux.pipeline(), flux, prompt, size, 3, 1.0, 0, output_type="latent")

    path = export(run_dir, "painting", tmp_path / "rc.safetensors")
    base = load_flux(info.base_source(run_dir))
    pipe = base.pipeline()
    pipe.load_lora_weights(str(run_dir / "base_lora.safetensors"), adapter_name="task")
    pipe.fuse_lora()
    pipe.unload_lora_weights()
    merged_only = sample(pipe, base, prompt, size, 3, 1.0, 0, output_type="latent")
    pipe.load_lora_weights(str(path), adapter_name="recraft")
    loaded = sample(pipe, base, prompt, size, 3, 1.0, 0, output_type="latent")
    assert (loaded - ours).abs().max() < 1e-4
    assert (loaded - merged_only).abs().max() > 1e-3


def test_cli_generate_final_frame_and_interpolation(shards, base_run, painting_run, tmp_path):
    p = argparse.ArgumentParser()
    cli.register(p.add_subparsers())
    run_cli = lambda *a: (lambda ns: ns.func(ns))(p.parse_args(a))  # noqa: E731

    fin, first = tmp_path / "fin.png", tmp_path / "first.png"
    frames(3, 1)[-1].save(fin)
    Image.new("RGB", (50, 50), (200, 30, 30)).save(first)
    run_dir = painting_run[0]
    assert (
        run_cli("generate", str(run_dir), "--image", str(fin), "--out", str(tmp_path / "g"), "--steps", "2")
        == 0
    )
    assert len(list((tmp_path / "g" / "frames").glob("*.png"))) == 9
    assert Image.open(tmp_path / "g" / "steps.gif").n_frames == 9

    interp = tmp_path / "interp"
    train(recraft_config(shards, base_run, "clay-toys", "interpolate", steps=2, ckpt_every=2), interp)
    out = tmp_path / "gi"
    assert (
        run_cli(
            "generate",
            str(interp),
            "--image",
            str(first),
            "--last",
            str(fin),
            "--out",
            str(out),
            "--steps",
            "2",
        )
        == 0
    )
    got = [np.asarray(Image.open(out / "frames" / f"step-{i:02d}.png")).astype(int) for i in (1, 4)]
    assert (
        abs(got[0].reshape(-1, 3).mean(0) - [200, 30, 30]).max() < 40
    )  # first cell is the given first frame
    assert run_cli("generate", str(interp), "--image", str(first), "--out", str(out)) == 2  # needs --last
