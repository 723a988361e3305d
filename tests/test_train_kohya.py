"""The authors' and kohya's LoRA files on the tiny random Flux: exact import onto split diffusers layers (fused
mode shares one A), exact export, round trips, bad files, training a 22nd head on a released 21-head file, and
diffusers' own kohya loader as the real client."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from training_fixtures import one_thread, tiny_config, write_released, write_shards  # noqa: F401 (one_thread: autouse)

from training import cli, kohya, run
from training.asymmetric_lora import AsymmetricLora, select_targets
from training.bfl_names import bfl_modules
from training.config import TinyModel
from training.flux_model import build_tiny, load_flux
from training.generate import pipeline_for, sample
from training.loop import train

RANK = 4


def transformer(**shape):
    return build_tiny(TinyModel(**shape)).transformer


def authors_file(path: Path, tr, heads: int, rank: int = RANK, alpha: float = 1.0, seed: int = 0) -> Path:
    """An authors'-format file for ``tr`` built from the BFL module shapes, with random values."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for b in bfl_modules(select_targets(tr, "all")):
        lins = [tr.get_submodule(m) for m in b.members]
        sd[f"{b.key}.lora_down.weight"] = torch.randn(rank, lins[0].in_features, generator=g) * 0.3
        for i in range(heads):
            out = sum(lin.out_features for lin in lins)
            sd[f"{b.key}.lora_ups.{i}.weight"] = torch.randn(out, rank, generator=g) * 0.3
        sd[f"{b.key}.alpha"] = torch.tensor(alpha)
    save_file(sd, path)
    return path


def test_bfl_names_cover_flux_like_the_authors():
    tr = transformer(num_layers=2, num_single_layers=3)
    mods = bfl_modules(select_targets(tr, "all"))
    assert len(mods) == 2 * 10 + 3 * 3  # 304 on Flux-dev: 19 x 10 + 38 x 3
    assert [b.key for b in mods[:3]] == [
        f"lora_unet_double_blocks_0_{n}" for n in ("img_mod_lin", "txt_mod_lin", "img_attn_qkv")
    ]
    linear1 = next(b for b in mods if b.key == "lora_unet_single_blocks_2_linear1")
    assert linear1.members[-1] == "single_transformer_blocks.2.proj_mlp"


def test_authors_file_is_read_exactly_onto_fused_layers(tmp_path):
    tr = transformer()
    path = authors_file(tmp_path / "a.safetensors", tr, heads=21)
    lora = AsymmetricLora(tr, RANK, 1.0, 21, "fused")
    assert kohya.load_into(lora, path) == 21
    raw = load_file(path)
    torch.manual_seed(1)
    for b in bfl_modules(list(lora.modules)):
        lins = [lora.modules[m] for m in b.members]
        assert all(m.lora_A is lins[0].lora_A for m in lins)  # one A per BFL layer
        w0 = torch.cat([m.base.weight for m in lins])  # the fused Linear, computed independently
        b0 = torch.cat([m.base.bias for m in lins])
        x = torch.randn(2, 3, w0.shape[1])
        for head in (1, 7, 21):
            a, up = raw[f"{b.key}.lora_down.weight"], raw[f"{b.key}.lora_ups.{head - 1}.weight"]
            expected = x @ w0.t() + b0 + (1.0 / RANK) * (x @ a.t()) @ up.t()
            lora.use([head, head])
            got = torch.cat([m(x) for m in lins], dim=-1)
            assert torch.allclose(got, expected, atol=1e-5), (b.key, head)


def test_round_trips_are_exact(tmp_path):
    tr = transformer()
    src = authors_file(tmp_path / "a.safetensors", tr, heads=5)
    fused = AsymmetricLora(tr, RANK, 1.0, 5, "fused")
    kohya.load_into(fused, src)
    out = kohya.write(fused, tmp_path / "b.safetensors", "authors")
    a, b = load_file(src), load_file(out)
    assert a.keys() == b.keys() and all(
        torch.equal(a[k], b[k]) for k in a
    )  # bit for bit: no rank concatenation
    one = load_file(kohya.write(fused, tmp_path / "k.safetensors", "kohya", head=3))
    assert all(torch.equal(one[k.replace("lora_ups.2.", "lora_up.")], a[k]) for k in a if ".lora_ups.2." in k)

    # split layers with their own A's: written at concatenated rank with block-diagonal B, read back exactly
    split = AsymmetricLora(transformer(seed=1), RANK, 1.0, 5, "all")
    with torch.no_grad():
        for p in split.trainable():
            p.normal_()
    path = kohya.write(split, tmp_path / "s.safetensors", "authors")
    assert load_file(path)["lora_unet_single_blocks_0_linear1.lora_down.weight"].shape[0] == 4 * RANK
    again = AsymmetricLora(transformer(seed=1), RANK, 1.0, 5, "all")
    kohya.load_into(again, path)
    before, after = split.state_dict(), again.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            "other_arch",
            "lora_unet_double_blocks_1_img_attn_proj.lora_down.weight is not a layer of this model",
        ),
        ("missing", "lora_unet_single_blocks_0_linear2.lora_down.weight is missing"),
        ("rank", "rank 4; the model has lora.rank 8"),
        ("heads", "21 heads but the model has lora.heads = 3"),
        ("nan", "lora_unet_double_blocks_0_txt_mlp_2.lora_ups.4.weight holds NaN"),
        ("junk", "'something_else' is not a kohya/authors Flux LoRA key"),
    ],
)
def test_bad_files_name_the_first_offending_key_and_change_nothing(tmp_path, damage, message):
    tr = transformer()
    path = authors_file(
        tmp_path / "a.safetensors", transformer(num_layers=2) if damage == "other_arch" else tr, 21
    )
    sd = load_file(path)
    if damage == "missing":
        sd = {k: v for k, v in sd.items() if "single_blocks_0_linear2" not in k}
    elif damage == "nan":
        sd["lora_unet_double_blocks_0_txt_mlp_2.lora_ups.4.weight"][0, 0] = float("nan")
    elif damage == "junk":
        sd["something_else"] = torch.zeros(1)
    save_file(sd, path)
    lora = AsymmetricLora(tr, 8 if damage == "rank" else RANK, 1.0, 3 if damage == "heads" else 21, "fused")
    before = {k: v.clone() for k, v in lora.state_dict().items()}
    with pytest.raises(kohya.LoraFileError, match=re.escape(message)):
        kohya.load_into(lora, path)
    assert all(torch.equal(before[k], v) for k, v in lora.state_dict().items())


def test_training_a_22nd_head_on_a_released_21_head_file(tmp_path):
    """Released model + a new task: heads 1..21 come from the file and stay bit-identical; head 22 learns."""
    tasks = yaml.safe_load(Path(__file__).parents[1].joinpath("manifests", "tasks.yaml").read_text())
    tasks["tasks"].append(
        {
            "id": "knitting",
            "name": "Knitting",
            "path": "craft/knitting",
            "head": 22,
            "frames": 4,
            "layout": "uturn-2x2",
            "process": "knitting",
            "prompts": ["a scarf being knitted"],
        }
    )
    (tmp_path / "tasks.yaml").write_text(yaml.safe_dump(tasks))
    write_released(
        tmp_path / "knit.tar", {"clay-toys": 22}, tagged=True
    )  # a 2x2 grid tagged --lora_up_cur 22
    cfg = tiny_config([str(tmp_path / "knit.tar")], steps=3, ckpt_every=3)
    cfg.data.taxonomy, cfg.data.shuffle_buffer = str(tmp_path / "tasks.yaml"), 1
    cfg.lora.heads, cfg.lora.targets, cfg.lora.alpha = 22, "fused", 1.0
    released = authors_file(
        tmp_path / "released.safetensors", build_tiny(cfg.model.tiny).transformer, heads=21
    )
    cfg.lora.init = str(released)
    train(cfg, tmp_path / "run")
    out = kohya.write(run.load(tmp_path / "run")[1], tmp_path / "after.safetensors", "authors")
    a, b = load_file(released), load_file(out)
    ups = [k for k in a if ".lora_ups." in k]
    assert ups and all(torch.equal(a[k], b[k]) for k in ups)  # heads 1..21 untouched
    new = [k for k in b if ".lora_ups.21." in k]
    assert len(new) == len(ups) // 21 and all(b[k].abs().sum() > 0 for k in new)  # head 22 trained from zero
    assert any(not torch.equal(a[k], b[k]) for k in a if k.endswith("lora_down.weight"))  # shared A trained


def _cli(*argv: str) -> int:
    p = argparse.ArgumentParser()
    cli.register(p.add_subparsers())
    args = p.parse_args(argv)
    return args.func(args)


def test_kohya_export_loads_in_diffusers_like_ours(tmp_path):
    """diffusers' kohya converter hard-codes Flux-dev's single-block sizes, so this tiny model has double blocks
    only; single-block linear1 is covered by the exact-import test above."""
    write_shards(tmp_path / "data", ["painting", "clay-toys"], per_task=2, per_shard=2)
    cfg = tiny_config([str(tmp_path / "data")], steps=4, ckpt_every=4, lr=1e-2)
    cfg.model.tiny.num_single_layers = 0
    train(cfg, tmp_path / "run")
    for fmt in ("kohya", "diffusers"):
        assert (
            _cli(
                "export-lora",
                str(tmp_path / "run"),
                "--task",
                "painting",
                "--format",
                fmt,
                "--out",
                str(tmp_path / f"{fmt}.safetensors"),
            )
            == 0
        )
    run_dir = str(tmp_path / "run")
    assert (
        _cli("export-lora", run_dir, "--format", "authors", "--out", str(tmp_path / "all.safetensors")) == 0
    )
    assert (
        _cli("export-lora", run_dir, "--format", "kohya", "--out", str(tmp_path / "x.safetensors")) == 2
    )  # no task

    def render(pipe, flux):
        return sample(pipe, flux, "a lighthouse", (48, 48), 3, 1.0, 3, output_type="latent")

    flux, lora, _, _ = run.load(tmp_path / "run")
    lora.use([3])  # painting
    ours = render(flux.pipeline(), flux)
    outs = {}
    for fmt in ("kohya", "diffusers"):
        base = load_flux(tmp_path / "run" / "base")
        pipe = base.pipeline()
        plain = render(pipe, base)
        pipe.load_lora_weights(str(tmp_path / f"{fmt}.safetensors"))
        outs[fmt] = render(pipe, base)
    assert (outs["kohya"] - ours).abs().max() < 1e-5 and (
        outs["kohya"] - outs["diffusers"]
    ).abs().max() < 1e-5
    assert (outs["kohya"] - plain).abs().max() > 1e-3  # the LoRA does something

    # our generate reads the same files itself: the authors' layout with --head, the kohya file by its task
    for path, head in ((tmp_path / "all.safetensors", 3), (tmp_path / "kohya.safetensors", None)):
        pipe, f, task, _ = pipeline_for(path, None, None, torch.device("cpu"), torch.float32, head)
        assert task.id == "painting"
        assert (render(pipe, f) - ours).abs().max() < 1e-5
    out = tmp_path / "gen"
    assert (
        _cli(
            "generate",
            str(tmp_path / "all.safetensors"),
            "--head",
            "11",
            "--prompt",
            "a frog",
            "--steps",
            "2",
            "--out",
            str(out),
        )
        == 0
    )
    assert len(list((out / "frames").glob("step-*.png"))) == 4  # head 11 is clay-toys: a 2x2 layout
