"""Training memory options on the tiny random Flux: heads offloaded to host memory, an fp8 base, and text
and latent caches that keep the encoders off the device."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from training_fixtures import TASKS, one_thread, tiny_config, write_shards  # noqa: F401 (one_thread: autouse)

from training.asymmetric_lora import select_targets
from training.config import TinyModel
from training.flux_model import build_tiny, save_base
from training.fp8 import Fp8Linear, native_report, native_supported, one_step_apart, quantize_, quantize_rows
from training.loop import Trainer, train

MIXED = ["painting", "clay-toys", "lego", "cook"]  # 3x3 and 2x2 tasks: batches of two mix heads


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("mem")
    write_shards(root / "train", MIXED, per_task=4, per_shard=4)
    return root / "train"


def config(shards, offload: bool, steps: int = 20, **data):
    cfg = tiny_config([str(shards)], steps=steps, ckpt_every=10, warmup=2)
    cfg.lora.offload_heads = offload
    for k, v in data.items():
        setattr(cfg.data, k, v)
    return cfg


def lora_file(run_dir, step: int) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "checkpoints" / f"step-{step:08d}" / "lora.safetensors")


@pytest.fixture(scope="module")
def plain_run(shards, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("plain") / "run"
    return run_dir, train(config(shards, offload=False), run_dir)


def test_offloaded_heads_train_bit_for_bit_like_resident_heads(shards, plain_run, tmp_path):
    plain_dir, plain = plain_run
    run_dir = tmp_path / "off"
    trainer = Trainer(config(shards, offload=True), run_dir)
    assert trainer.offload is not None
    records = trainer.fit()
    assert any(
        len(set(r["keys"])) == 2 and r["keys"][0].split("_")[0] != r["keys"][1].split("_")[0] for r in records
    ), "no mixed-task batch: the test would not exercise per-sample heads"
    assert [r["keys"] for r in records] == [r["keys"] for r in plain]
    assert [r["loss"] for r in records] == [r["loss"] for r in plain]  # exact
    for step in (10, 20):
        ours, ref = lora_file(run_dir, step), lora_file(plain_dir, step)
        assert ours.keys() == ref.keys() and all(torch.equal(ours[k], ref[k]) for k in ref)
    # offloading really happened: heads not in the last batch live in (separate) host buffers
    resident = set(trainer.offload.resident)
    assert len(resident) < trainer.lora.heads
    off_head = next(k for k in range(trainer.lora.heads) if k not in resident)
    p = trainer.offload.params[off_head][0]
    assert p.data.data_ptr() == trainer.offload.home[off_head].views["param"][0].data_ptr()


def test_a_head_never_used_stays_untouched_with_offload(shards, tmp_path):
    run_dir = tmp_path / "run"
    trainer = Trainer(config(shards, offload=True, steps=6), run_dir)
    trainer.fit()
    emoji = TASKS["emoji"].head
    saved = lora_file(run_dir, 6)
    unused = [k for k in saved if k.endswith(f".lora_B.{emoji}")]
    assert unused and all(torch.count_nonzero(saved[k]) == 0 for k in unused)
    assert not trainer.offload.home[emoji - 1].trained  # never stepped: no optimiser state either
    assert all(p not in trainer.opt.state for p in trainer.offload.params[emoji - 1])
    used = TASKS["painting"].head
    assert all(torch.count_nonzero(saved[k]) > 0 for k in saved if k.endswith(f".lora_B.{used}"))


def test_resume_with_offload_gives_the_same_losses(shards, plain_run, tmp_path):
    _, plain = plain_run
    cfg = config(shards, offload=True)
    run_dir = tmp_path / "run"
    first = train(cfg, run_dir, until=10)
    rest = train(cfg, run_dir, resume=True)
    assert [r["step"] for r in first + rest] == list(range(1, 21))
    for a, b in zip(plain, first + rest):
        assert a["keys"] == b["keys"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)  # the same tolerance as resume without offload


# --- fp8 base ---------------------------------------------------------------------------------------------


def test_quantize_rows_is_within_e4m3_precision():
    w = torch.randn(64, 48) * torch.logspace(-3, 1, 64)[:, None]  # rows of very different magnitude
    q, scale = quantize_rows(w)
    assert q.dtype == torch.float8_e4m3fn and scale.shape == (64,)
    err = (q.float() * scale[:, None] - w).abs() / w.abs().amax(dim=1, keepdim=True)
    assert err.max() < 2**-4  # e4m3 keeps 3 mantissa bits: half an ulp at the top of the range is 1/16


def _native_on_cpu() -> None:
    """Skip where this torch build has no CPU ``_scaled_mm`` (oneDNN): the native path is then CUDA-only."""
    if not native_supported(torch.device("cpu")):
        pytest.skip(
            "torch._scaled_mm with row-wise scales does not run on this CPU build; native fp8 is "
            "checked on a GPU by bench/train_gpu.py (output error against bf16)"
        )


@pytest.mark.parametrize("mode", ["upcast", "native"])
def test_fp8_linear_forward_and_input_gradient_track_the_bf16_layer(mode):
    """Tolerance: 3% relative L2 for the weight-only quantisation (upcast), 5% where the activations are
    quantised per token too (native); the backward is the same dequantised product in both."""
    if mode == "native":
        _native_on_cpu()
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 48).to(torch.bfloat16)
    x = torch.randn(4, 10, 64, dtype=torch.bfloat16, requires_grad=True)
    ref = lin(x)
    ref.float().square().sum().backward()
    g_ref, x.grad = x.grad.clone(), None
    fp8 = Fp8Linear(lin, mode)
    assert not any(p.requires_grad for p in fp8.parameters())
    assert fp8.native(x) == (mode == "native")
    out = fp8(x)
    out.float().square().sum().backward()
    rel = lambda a, b: ((a.float() - b.float()).norm() / b.float().norm()).item()  # noqa: E731
    tol = 0.03 if mode == "upcast" else 0.05
    assert out.dtype == torch.bfloat16 and rel(out, ref) < tol and rel(x.grad, g_ref) < tol
    assert rel(out, ref) > 0  # really quantised


def test_fp8_matmul_dispatch_native_only_where_it_runs_and_fits():
    lin = torch.nn.Linear(64, 48)
    x = torch.randn(3, 64)
    assert not Fp8Linear(lin, "auto").native(x)  # auto: fp8 matmuls on CUDA only, upcast on the CPU
    assert not Fp8Linear(lin, "upcast").native(x)
    with pytest.raises(ValueError, match="not one of"):
        Fp8Linear(lin, "fast")
    odd = Fp8Linear(torch.nn.Linear(40, 48), "native")  # 40 in-features: not a multiple of 16
    with pytest.raises(RuntimeError, match="native fp8 matmul is not available on cpu for a 40->48 layer"):
        odd(torch.randn(3, 40))
    assert "upcast" in native_report(torch.device("cpu"))


def test_kernel_check_tolerates_one_rounding_step_and_no_more():
    """The GPU's Triton quantiser and dequantiser are accepted against torch's casts within one step of the
    output dtype (this is the check that decides, on the GPU, whether they are used)."""
    q, _ = quantize_rows(torch.randn(64, 500) * torch.logspace(-3, 3, 64)[:, None])
    bits = q.view(torch.uint8)
    step = lambda n: (((bits & 0x7F).clamp(max=0x7E - n) + n) | (bits & 0x80)).view(torch.float8_e4m3fn)  # noqa: E731
    assert one_step_apart(step(0), q) and one_step_apart(step(1), q) and not one_step_apart(step(2), q)
    w = torch.randn(100, 100).to(torch.bfloat16)
    bump = lambda n: (w.view(torch.int16) + n).view(torch.bfloat16)  # noqa: E731
    assert one_step_apart(bump(1), w) and not one_step_apart(bump(2), w)


@pytest.mark.parametrize("mode", ["upcast", "native"])
def test_fp8_tiny_flux_forward_within_tolerance_of_bf16(mode):
    """Tolerance: relative L2 error of the transformer's output below 5% (e4m3 has 3 mantissa bits; the
    bf16 model itself differs from float32 by ~0.5% here)."""
    if mode == "native":
        _native_on_cpu()
    model = build_tiny(TinyModel(num_layers=2, num_single_layers=2)).transformer.to(torch.bfloat16)
    g = torch.Generator().manual_seed(1)
    inputs = dict(
        hidden_states=torch.randn(1, 64, 4, generator=g),
        encoder_hidden_states=torch.randn(1, 16, 32, generator=g),
        pooled_projections=torch.randn(1, 32, generator=g),
        timestep=torch.tensor([0.5]),
        img_ids=torch.zeros(64, 3),
        txt_ids=torch.zeros(16, 3),
        guidance=torch.tensor([1.0]),
    )
    inputs = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in inputs.items()}
    with torch.no_grad():
        ref = model(**inputs, return_dict=False)[0].float()
        names = select_targets(model, "all")
        quantize_(model, names, torch.device("cpu"), mode)
        assert all(isinstance(model.get_submodule(n), Fp8Linear) for n in names)
        out = model(**inputs, return_dict=False)[0].float()
    rel = ((out - ref).norm() / ref.norm()).item()
    assert 0 < rel < 0.05, rel


def _overfit(root, tmp_path, base_dtype: str) -> tuple[float, float]:
    """Validation loss before and after 30 steps on the validation samples themselves."""
    cfg = tiny_config(
        [str(root)],
        steps=30,
        ckpt_every=30,
        warmup=0,
        lr=1e-2,
        schedule="constant",
        val_every=30,
        val_timesteps=[0.3, 0.6],
    )
    cfg.model.base_dtype = base_dtype
    cfg.data.val_shards, cfg.data.val_samples, cfg.data.shuffle_buffer = [str(root)], 2, 1
    trainer = Trainer(cfg, tmp_path / base_dtype)
    if base_dtype == "fp8":
        assert isinstance(
            trainer.flux.transformer.get_submodule("transformer_blocks.0.attn.to_q").base, Fp8Linear
        )
    before = trainer.val_loss()
    return before, trainer.fit()[-1]["val_loss"]


def test_training_on_an_fp8_base_lowers_the_loss_like_full_precision(tmp_path):
    write_shards(tmp_path / "one", ["painting"], per_task=2, per_shard=2)
    full = _overfit(tmp_path / "one", tmp_path, "bf16")
    fp8 = _overfit(tmp_path / "one", tmp_path, "fp8")
    assert fp8[0] == pytest.approx(full[0], rel=0.05)  # the same model, up to quantisation
    assert fp8[1] < fp8[0] - 0.5 * (full[0] - full[1]), (full, fp8)  # at least half the full-precision gain
    assert (tmp_path / "fp8" / "run.json").read_text().count('"fp8"') == 1  # resume rebuilds the same base


# --- text and latent caches ---------------------------------------------------------------------------------


def _count_calls(modules) -> list[int]:
    calls = [0]
    for m in modules:
        m.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_caches_keep_the_encoders_idle_and_train_like_no_cache(shards, tmp_path):
    save_base(build_tiny(TinyModel()), tmp_path / "base")  # one base model shared by every run below

    def cfg(steps: int, cell: int = 16, cached: bool = True):
        c = config(
            shards,
            offload=False,
            steps=steps,
            **(
                {"text_cache": str(tmp_path / "text"), "latent_cache": str(tmp_path / "latent")}
                if cached
                else {}
            ),
        )
        c.model.model, c.data.cell = str(tmp_path / "base"), cell
        return c

    plain = train(cfg(6, cached=False), tmp_path / "plain")
    cached = train(cfg(6), tmp_path / "cached")
    assert [r["keys"] for r in cached] == [r["keys"] for r in plain]
    # text encoded one caption at a time (cache fill) vs batched: float noise
    assert [r["loss"] for r in cached] == pytest.approx([r["loss"] for r in plain], rel=1e-4)
    stamps = {d: _stamps(tmp_path / d) for d in ("text", "latent")}
    assert len(stamps["text"]) == len(stamps["latent"]) == len(MIXED) * 4

    # a second run on the filled caches rewrites no entry and never runs an encoder, which stay on the CPU
    trainer = Trainer(cfg(3), tmp_path / "again")
    f = trainer.flux
    calls = _count_calls([f.vae, f.text_encoder, f.text_encoder_2])
    trainer.fit()
    assert calls == [0]
    assert {d: _stamps(tmp_path / d) for d in ("text", "latent")} == stamps
    assert {next(m.parameters()).device.type for m in (f.vae, f.text_encoder, f.text_encoder_2)} == {"cpu"}

    # another cell size invalidates every latent (and no text entry): each is encoded again, once
    Trainer(cfg(1, cell=8), tmp_path / "smaller")
    after = {d: _stamps(tmp_path / d) for d in ("text", "latent")}
    assert after["text"] == stamps["text"]
    assert after["latent"].keys() == stamps["latent"].keys()
    assert all(after["latent"][k][0] != stamps["latent"][k][0] for k in stamps["latent"])


def _stamps(folder) -> dict[str, tuple[str, int]]:
    """file -> (digest, mtime): an entry rewritten or recomputed shows up as a change."""
    from safetensors import safe_open

    out = {}
    for path in folder.glob("*.safetensors"):
        with safe_open(str(path), "pt") as f:
            out[path.name] = (f.metadata()["digest"], path.stat().st_mtime_ns)
    return out


# --- the GPU benchmark's script -----------------------------------------------------------------------------


def test_gpu_bench_runs_every_variant_on_the_tiny_model_and_prints_the_fit_check(monkeypatch, capsys):
    """bench/train_gpu.py is measured on a GPU separately: here its whole script runs on the CPU (tiny model),
    so it cannot rot unnoticed; on the CPU offloading must match resident heads exactly."""
    from bench import train_gpu

    monkeypatch.setattr(
        "sys.argv", ["train_gpu", "--tiny", "--steps", "1", "--warmup", "1", "--grids", "2x2"]
    )
    train_gpu.main()
    out = capsys.readouterr().out
    assert "heads offloaded vs resident differ by 0.00e+00 relative L2 (ok)" in out
    variants = [
        "peft",
        "peft f32 LoRA",
        "ours 21 heads",
        "ours+offload",
        "ours+offload, drained",
        "recraft",
        "ours+offload+fp8 upcast",
    ]
    variants += ["ours+offload+fp8 native"] if native_supported(torch.device("cpu")) else []
    for v in variants:
        row = next(line for line in out.splitlines() if line.startswith(f"| 2x2 | {v} |"))
        assert float(row.split("|")[3]) > 0  # s/step measured
        assert any(line.startswith(f"  2x2 {v} ") and "fit" in line for line in out.splitlines())
    assert "T5-XXL encoder 8.87" in out  # what the caches keep off the GPU, from the real configuration
    assert "fp8 upcast: output rel. L2 error vs bf16" in out


def test_gpu_bench_reports_a_failing_variant_and_measures_the_others(monkeypatch, capsys):
    """One GPU run must bring back every figure it can: a variant that fails (here everything offloaded, the
    check included, as if out of memory) is printed as failed and the later variants still run."""
    from bench import train_gpu

    real = train_gpu.measure

    def offload_fails(*args, **kw):
        if (kw["offload"] if "offload" in kw else args[12]) is not None:  # the HeadOffloader argument
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(*args, **kw)

    monkeypatch.setattr(train_gpu, "measure", offload_fails)
    monkeypatch.setattr(
        "sys.argv", ["train_gpu", "--tiny", "--steps", "1", "--warmup", "1", "--grids", "2x2", "--no-fp8"]
    )
    train_gpu.main()
    out = capsys.readouterr().out
    assert "offload check FAILED: RuntimeError('CUDA out of memory (simulated)')" in out
    assert "2x2 64px ours+offload               FAILED: RuntimeError('CUDA out of memory (simulated)')" in out
    assert "| 2x2 | recraft |" in out and "| 2x2 | ours+offload |" not in out


def test_gpu_bench_says_it_needs_cuda_for_the_full_size_model(monkeypatch, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: this would start the full benchmark")
    from bench import train_gpu

    monkeypatch.setattr("sys.argv", ["train_gpu", "--steps", "1"])
    with pytest.raises(SystemExit) as exit_:
        train_gpu.main()
    assert exit_.value.code == 2 and "needs a CUDA GPU" in capsys.readouterr().err
