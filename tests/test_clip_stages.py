"""ClipFilter and ClipScore on Work items, driven by a tiny random open_clip model.

Random weights decide nothing meaningful, so the tests pin behaviour that does not depend on the
weights: config margins that keep or drop everything, exact duplicate images, shapes and the
CLIP score formula checked against open_clip's own preprocessing.
"""

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from pipeline.clip.model import ClipSpec, load
from pipeline.clip.stages import ClipFilter, ClipScore
from pipeline.config import ClipConfig
from pipeline.taxonomy import Taxonomy
from pipeline.work import Frame, Reject, Segment, Sequence, Source, Work
from testkit.tiny_clip import register_tiny, write_random_model


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> ClipSpec:
    root = tmp_path_factory.mktemp("tiny-clip")
    return ClipSpec(write_random_model(root / "model", register_tiny(root / "configs")), None)


def make_work(images: list[np.ndarray], ordered: bool = True, segments: int = 1) -> Work:
    task = Taxonomy.load()["painting"]
    source = Source(uri="folder/steps", path="folder/steps", task=task, kind="images", ordered=ordered)
    frames = [
        Frame(source_frame=i, file=f"{i:02d}.png", time=None, image=img, scores={"sharpness": 1.0})
        for i, img in enumerate(images)
    ]
    per = len(frames) // segments
    return Work(
        source=source, segments=[Segment(frames=frames[k * per : (k + 1) * per]) for k in range(segments)]
    )


def distinct(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (60, 90, 3), dtype=np.uint8) for _ in range(n)]


def test_keep_all_margin_keeps_every_frame_and_records_scores(spec):
    work = ClipFilter(spec, ClipConfig(relevance_margin=2.0, duplicate_similarity=1.0))(
        make_work(distinct(6), segments=2)
    )
    assert [len(s.frames) for s in work.segments] == [3, 3]
    for seg in work.segments:
        assert np.stack([f.embedding for f in seg.frames]).shape == (3, 32)
        assert {"clip_relevance", "clip_margin"} <= seg.scores.keys()
        for f in seg.frames:
            assert -1.0 <= f.scores["clip_relevance"] <= 1.0 and "clip_margin" in f.scores
    assert not work.drops  # no reason recorded, not even with a zero count


def test_drop_all_margin_rejects_the_source_with_shot_reasons(spec):
    work = make_work(distinct(6), segments=2)
    with pytest.raises(Reject, match="painting prompts"):
        ClipFilter(spec, ClipConfig(relevance_margin=-2.0))(work)
    assert sum(n for reason, n in work.drops.items() if reason.startswith("clip: shot looks like")) == 6


def test_exact_duplicates_merge_to_the_sharpest(spec):
    a, b, c = distinct(3)
    work = make_work([a, a.copy(), b, c, c.copy(), c.copy()])
    work.segments[0].frames[4].scores["sharpness"] = 9.0
    cfg = ClipConfig(relevance_margin=2.0, duplicate_similarity=0.99999)
    work = ClipFilter(spec, cfg)(work)
    assert [f.file for f in work.segments[0].frames] == ["01.png", "02.png", "04.png"]
    assert work.drops["clip: near-duplicate"] == 3
    assert np.stack([f.embedding for f in work.segments[0].frames]).shape == (3, 32)


def test_unordered_source_is_put_in_progress_order(spec):
    work = make_work(distinct(7, seed=4), ordered=False)
    before = {f.file for f in work.segments[0].frames}
    work = ClipFilter(spec, ClipConfig(relevance_margin=2.0, duplicate_similarity=1.0))(work)
    seg = work.segments[0]
    assert {f.file for f in seg.frames} == before
    progress = [f.scores["clip_progress"] for f in seg.frames]
    assert progress == sorted(progress) and progress[0] == 0.0 and progress[-1] == 1.0
    assert 0.0 <= seg.scores["clip_order_confidence"] <= 1.0 and seg.scores["clip_order_direction"] >= 0.0
    # the embeddings follow the frames into their new order
    np.testing.assert_allclose(
        np.stack([f.embedding for f in seg.frames]),
        load(spec).embed_images([f.image for f in seg.frames], 8),
        atol=1e-5,
    )
    assert [f.file for f in seg.frames] != sorted(before)  # this seed's order is not the file order


def test_ordered_source_keeps_time_order(spec):
    work = ClipFilter(spec, ClipConfig(relevance_margin=2.0, duplicate_similarity=1.0))(
        make_work(distinct(5))
    )
    assert [f.file for f in work.segments[0].frames] == [f"{i:02d}.png" for i in range(5)]
    assert "clip_progress" not in work.segments[0].frames[0].scores


def test_clip_score_matches_open_clip_computed_directly(spec):
    grids = [Image.fromarray(img).resize((120, 120)) for img in distinct(2, seed=7)]
    captions = ["3*3 of 9 sub-images, step-by-step painting process, a fish", "a blank screen"]
    work = make_work(distinct(1))
    work.sequences = [
        Sequence(frames=[], segment_scores={}, grid=g, caption=c) for g, c in zip(grids, captions)
    ]
    ClipScore(spec, ClipConfig())(work)

    model, _, preprocess = open_clip.create_model_and_transforms(spec.model)
    tokenizer = open_clip.get_tokenizer(spec.model)
    with torch.no_grad():
        img = model.encode_image(torch.stack([preprocess(g) for g in grids]))
        txt = model.encode_text(tokenizer(captions))
    cos = torch.nn.functional.cosine_similarity(img, txt).numpy()
    expected = np.maximum(100 * cos, 0)
    np.testing.assert_allclose([s.scores["clip"] for s in work.sequences], expected, atol=1e-3)


def test_clip_score_needs_a_grid(spec):
    work = make_work(distinct(1))
    work.sequences = [Sequence(frames=[], segment_scores={}, caption="x")]
    with pytest.raises(ValueError, match="folder/steps: sequence 0 .* without a grid"):
        ClipScore(spec, ClipConfig())(work)
