"""The open_clip path with a tiny random model: weights plan, determinism, batching, per-process caching.

Random weights make cosines meaningless, so these tests check the machinery, never decisions.
"""

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.clip import ClipUnavailable, plan_clip
from pipeline.clip.locate import locate
from pipeline.clip.model import ClipModel, ClipSpec, load
from pipeline.config import ClipConfig
from testkit.tiny_clip import register_tiny, write_random_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("tiny-clip")
    arch = register_tiny(root / "configs")
    return {
        "arch": arch,
        "seed0": write_random_model(root / "seed0", arch, seed=0),
        "seed0b": write_random_model(root / "seed0b", arch, seed=0),
        "seed1": write_random_model(root / "seed1", arch, seed=1),
        "root": root,
    }


def frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (48 + 8 * (i % 3), 80, 3), dtype=np.uint8) for i in range(n)]


def test_local_dir_plan_is_ready_and_loads_real_weights(tiny):
    plan = plan_clip(ClipConfig(model=tiny["seed0"]))
    assert plan.ready and plan.spec.model == tiny["seed0"] and plan.spec.checkpoint is None
    assert tiny["seed0"] in plan.message


def test_checkpoint_file_and_local_dir_load_the_same_weights(tiny):
    weights = Path(tiny["seed0"].removeprefix("local-dir:")) / "open_clip_pytorch_model.bin"
    plan = plan_clip(ClipConfig(model=tiny["arch"], pretrained=str(weights)))
    assert plan.ready and plan.spec.checkpoint == str(weights)
    imgs = frames(3)
    np.testing.assert_array_equal(
        load(plan.spec).embed_images(imgs, 8), load(ClipSpec(tiny["seed0"], None)).embed_images(imgs, 8)
    )


def test_loader_refuses_to_build_a_random_model(tiny):
    with pytest.raises(RuntimeError, match="pretrained"):
        ClipModel(ClipSpec(tiny["arch"], None))


def test_missing_weights_skip_says_which_model_where_and_how(tmp_path):
    plan = plan_clip(ClipConfig(cache_dir=str(tmp_path)))
    assert not plan.ready
    for part in (
        "skipped",
        "ViT-B-32",
        "laion2b_s34b_b79k",
        str(tmp_path),
        "clip.download",
        "clip.pretrained",
        "local-dir:",
        "pixel-based",
    ):
        assert part in plan.message, part


def test_no_weights_is_found_out_without_importing_torch(tmp_path):
    """The default config on a machine without the weights: the plan looks at files only (a torch import
    costs seconds per run)."""
    code = (
        "import sys; from pipeline.clip import plan_clip; from pipeline.config import ClipConfig; "
        "plan = plan_clip(ClipConfig()); "
        "print(plan.ready, sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'open_clip')))"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "PYTHONPATH": str(Path(__file__).parents[1])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[0] == "False []", out.stdout + out.stderr


def test_weights_in_the_hub_cache_are_found(tmp_path):
    """A tag's weights left by an earlier download, in the hub cache's layout (models--org--name)."""
    repo = tmp_path / "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    weights = repo / "snapshots" / "abc123" / "open_clip_model.safetensors"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"not read by locate")
    assert locate(ClipConfig(cache_dir=str(tmp_path))).checkpoint == str(weights)
    plan = plan_clip(ClipConfig(cache_dir=str(tmp_path)))  # found, then refused when loaded: not weights
    assert not plan.ready and "could not be loaded" in plan.message


def test_require_turns_the_skip_into_an_error(tmp_path):
    with pytest.raises(ClipUnavailable, match=r"laion2b_s34b_b79k.*" + str(tmp_path)):
        plan_clip(ClipConfig(cache_dir=str(tmp_path), require=True))
    with pytest.raises(ClipUnavailable, match="clip.enabled: false"):
        plan_clip(ClipConfig(enabled=False, require=True))


@pytest.mark.parametrize(
    "setup, expected",
    [
        (lambda d: None, "does not exist"),
        (lambda d: d.mkdir(), "no open_clip_config.json"),
        (lambda d: (d.mkdir(), (d / "open_clip_config.json").write_text("{}")), "no weights file"),
    ],
)
def test_bad_local_dir_is_named(tmp_path, setup, expected):
    folder = tmp_path / "model"
    setup(folder)
    plan = plan_clip(ClipConfig(model=f"local-dir:{folder}"))
    assert not plan.ready and expected in plan.message and str(folder) in plan.message


def test_corrupt_checkpoint_is_caught_before_work(tiny, tmp_path):
    bad = tmp_path / "broken.bin"
    bad.write_bytes(b"not a checkpoint")
    plan = plan_clip(ClipConfig(model=tiny["arch"], pretrained=str(bad)))
    assert not plan.ready and "could not be loaded" in plan.message and str(bad) in plan.message


def test_unknown_tag_and_architecture_are_named():
    assert "'nope'" in plan_clip(ClipConfig(pretrained="nope")).message
    assert "openai" in plan_clip(ClipConfig(pretrained="nope")).message  # lists the real tags
    assert "'ViT-Nope'" in plan_clip(ClipConfig(model="ViT-Nope")).message


def test_embeddings_are_deterministic_for_a_seed(tiny):
    imgs = frames(5)
    a = ClipModel(ClipSpec(tiny["seed0"], None)).embed_images(imgs, 4)
    b = ClipModel(ClipSpec(tiny["seed0b"], None)).embed_images(imgs, 4)
    c = ClipModel(ClipSpec(tiny["seed1"], None)).embed_images(imgs, 4)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)


def test_several_staging_threads_keep_the_order_and_the_values(tiny):
    """Batches staged by several threads reach the model in the order of the images, also when the
    images mix sizes and some are PIL images (read-only arrays), and give one thread's embeddings."""
    from PIL import Image

    model = ClipModel(ClipSpec(tiny["seed0"], None, device="cpu"), resize_on_device=True)
    imgs = frames(11)
    imgs[4] = Image.fromarray(imgs[4])
    model.stagers = 1
    one = model.embed_images(imgs, 2)
    model.stagers = 4
    np.testing.assert_array_equal(model.embed_images(imgs, 2), one)
    assert not np.allclose(one[:-1], one[1:], atol=1e-3)  # distinct images: the order is tested


def test_batched_equals_unbatched(tiny):
    model = load(ClipSpec(tiny["seed0"], None))
    imgs = frames(7)
    one = model.embed_images(imgs, 1)
    np.testing.assert_allclose(model.embed_images(imgs, 3), one, atol=1e-5)
    np.testing.assert_allclose(model.embed_images(iter(imgs), 64), one, atol=1e-5)
    texts = ["a painting in progress", "a blank screen", "a title card"]
    np.testing.assert_allclose(model.embed_texts(texts)[1:], model.embed_texts(texts[1:]), atol=1e-5)


def test_frames_embed_as_open_clip_preprocessing_would(tiny):
    """The per-batch ToTensor + Normalize in ClipModel gives open_clip's own eval transform's result."""
    import open_clip
    from PIL import Image

    imgs = frames(5)  # non-square, mixed sizes: resize and centre crop matter
    model, _, preprocess = open_clip.create_model_and_transforms(tiny["seed0"])
    with torch.no_grad():
        direct = model.encode_image(torch.stack([preprocess(Image.fromarray(i)) for i in imgs]))
    direct = torch.nn.functional.normalize(direct, dim=-1).numpy()
    np.testing.assert_allclose(load(ClipSpec(tiny["seed0"], None)).embed_images(imgs, 2), direct, atol=1e-5)


def test_resizing_on_the_device_matches_pil_resizing(tiny):
    """The GPU route (open_clip's resize steps on uint8 batch tensors), exercised here on the CPU."""
    from PIL import Image

    spec = ClipSpec(tiny["seed0"], None, device="cpu")
    on_device = ClipModel(spec, resize_on_device=True)
    assert on_device.resize_on_device and not load(spec).resize_on_device
    imgs = frames(6) + [Image.fromarray(frames(1, seed=3)[0])]  # mixed sizes and a PIL image
    a, b = on_device.embed_images(imgs, 4), load(spec).embed_images(imgs, 4)
    assert np.min(np.sum(a * b, axis=1)) > 0.999
    with pytest.raises(ValueError, match=r"RGB uint8 .*\(4, 4\)"):
        on_device.embed_images([np.zeros((4, 4), np.uint8)], 1)


def test_load_is_cached_per_process(tiny):
    spec = ClipSpec(tiny["seed0"], None)
    assert load(spec) is load(spec)
    assert load(spec) is not load(replace(spec, device="cpu"))  # a different spec is a different model


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_runs_fp16_and_agrees_with_cpu(tiny):
    gpu = ClipModel(ClipSpec(tiny["seed0"], None, device="auto"))
    assert gpu.device.type == "cuda" and next(gpu.model.parameters()).dtype == torch.float16
    imgs = frames(6)
    cpu = ClipModel(ClipSpec(tiny["seed0"], None, device="cpu")).embed_images(imgs, 4)
    np.testing.assert_allclose(gpu.embed_images(imgs, 4), cpu, atol=2e-2)


def _model_identity(spec: ClipSpec) -> tuple[int, int]:
    return os.getpid(), id(load(spec))


def _models_loaded() -> int:
    from pipeline.clip import model

    return len(model._LOADED)


def test_each_dask_worker_process_loads_the_model_once(tiny):
    from distributed import Client, LocalCluster

    spec = ClipSpec(tiny["seed0"], None, device="cpu")
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        futures = [client.submit(_model_identity, spec, pure=False) for _ in range(8)]
        identities = set(client.gather(futures))
        cached = client.run(_models_loaded)
    assert len(identities) == 1  # one worker process, one model object for all 8 tasks
    ((pid, _),) = identities
    assert pid != os.getpid()
    assert list(cached.values()) == [1]
