"""Decode on videos whose frames carry their own index (ground truth), with keyframes every few frames:
sampling sparser than the keyframes leaves groups of pictures undecoded, yet yields exactly the frames
a decode of every frame would have sampled, pixel for pixel (closed and open GOPs)."""

from __future__ import annotations

import av
import numpy as np
import pytest

import pipeline.stages.decode as decode_stage
from pipeline.config import AnalysisConfig
from pipeline.stages.decode import Decode
from pipeline.stages.probe import Probe
from pipeline.taxonomy import Taxonomy
from pipeline.work import Source, Work

FPS, N, W, H, BITS = 25, 250, 320, 176, 8


def _indexed_video(path, gop: int, open_gop: bool) -> None:
    """Frame i shows i in binary: BITS blocks, white for 1, over a moving gradient (real motion to code)."""
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.options = {
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=2:open-gop={int(open_gop)}"
        }
        ramp = np.linspace(0, 120, W, dtype=np.float32)
        for i in range(N):
            img = np.empty((H, W, 3), np.uint8)
            img[:] = (np.roll(ramp, 3 * i)[None, :, None]).astype(np.uint8)
            for b in range(BITS):
                img[8:48, 8 + 38 * b : 40 + 38 * b] = 255 if (i >> b) & 1 else 0
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _index(img: np.ndarray) -> int:
    """The frame index drawn into a decoded frame (at any analysis scale)."""
    sy, sx = img.shape[0] / H, img.shape[1] / W
    return sum(1 << b for b in range(BITS) if img[int(28 * sy), int((24 + 38 * b) * sx)].mean() > 190)


def _decode(path, rate: float, skip_nonref: bool = True, max_side: int = 512) -> Work:
    src = Source(uri=str(path), path=str(path), task=Taxonomy.load()["painting"], kind="video")
    return Decode(AnalysisConfig(rate=rate, skip_nonref=skip_nonref, max_side=max_side))(Probe()(Work(src)))


@pytest.mark.parametrize("open_gop", [False, True])
def test_sparse_sampling_skips_groups_of_pictures_and_keeps_the_right_frames(tmp_path, open_gop):
    path = tmp_path / "indexed.mp4"
    _indexed_video(path, gop=5, open_gop=open_gop)
    every = _decode(path, rate=FPS, skip_nonref=False)  # the grid of the frames: every frame is sampled
    assert [_index(f.image) for f in every.frames] == list(range(N))
    sparse = _decode(path, rate=1.0)  # one frame per second (keyframes): 1 group of pictures in 5 is needed
    shown = [_index(f.image) for f in sparse.frames]
    assert shown == [f.source_frame for f in sparse.frames] == list(range(0, N, FPS))
    assert sparse.probe["decoded_frames"] < N / 5, sparse.probe["decoded_frames"]  # ~150 without skipping
    for f in sparse.frames:  # the same pixels as when every frame was decoded
        assert np.array_equal(f.image, every.frames[f.source_frame].image), f.source_frame


def test_a_long_group_of_pictures_is_held_in_pieces_and_decoded_whole(tmp_path, monkeypatch):
    """Few keyframes (one in 10 s here): packets are not all held at once, and the frames are the same."""
    path = tmp_path / "long-gop.mp4"
    _indexed_video(path, gop=N, open_gop=False)
    held = _decode(path, rate=1.0)
    runs = []
    real = decode_stage._runs
    monkeypatch.setattr(decode_stage, "RUN_BYTES", 4096)
    monkeypatch.setattr(
        decode_stage, "_runs", lambda packets, cap: (runs.append(r) or r for r in real(packets, cap))
    )
    pieces = _decode(path, rate=1.0)
    assert len(runs) > 3 and not any(whole for _, whole in runs)
    assert max(sum(q.size for q in run[:-1]) for run, _ in runs) <= 4096  # the cap, give or take one packet
    assert [_index(f.image) for f in pieces.frames] == [f.source_frame for f in pieces.frames]
    assert [f.source_frame for f in pieces.frames] == [f.source_frame for f in held.frames]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(pieces.frames, held.frames))


def test_frames_are_scaled_as_pyav_scales_them(tmp_path):
    """One scaling context for the whole video gives the pixels of PyAV's own per-frame conversion."""
    path = tmp_path / "indexed.mp4"
    _indexed_video(path, gop=25, open_gop=False)
    work = _decode(path, rate=5.0, max_side=160)
    with av.open(str(path)) as c:
        plain = [f.to_ndarray(format="rgb24", width=160, height=88) for f in c.decode(video=0)]
    assert work.frames[0].image.shape == (88, 160, 3) and len(work.frames) == 50
    for f in work.frames:
        assert np.array_equal(f.image, plain[f.source_frame]), f.source_frame
