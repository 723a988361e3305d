"""The demo generator's tutorials as a phone or an editor would export them: what a clean synthetic video
lacks and what decides what decoding and analysis cost on users' footage.

A clean render compresses to a few hundred kbit/s with almost no residual, so it decodes faster than
anything users film. Here every frame gets the paper and desk's fixed texture, a lens's softness, a
camera's slight shake (a smooth random walk of a pixel or two and a small roll) and sensor noise (grain
of about two pixels), then libx264 encodes it the way exports are made: CRF 19, High profile, B-frames,
keyframes at scene cuts and every 6 s (x264's defaults otherwise, preset veryfast); 1280x720 at 30 fps
lands near 1.0-1.2 Mbit/s. Made once per bench footage folder: about 100 s of CPU per 70-s video.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from pipeline.demo.synthetic import Script, Truth, tutorial_frames, write_video

FPS = 30
SIZE = (1280, 720)
RENDER_FPS = 10  # the generator's rate: the work and the hand change 10 times a second
GRAIN = 1.0  # sensor noise, grey levels (after a phone's denoising)
LENS = 0.8  # the lens's softness, pixels (Gaussian sigma)
SCRIPT = Script(intro=3, talk=5, process=56, hold=3, outro=3, hand_bursts=12, hand_seconds=2.0)  # 70 s


def _shaken(
    frames: Iterator[np.ndarray], rng: np.random.Generator, size: tuple[int, int], repeat: int
) -> Iterator[np.ndarray]:
    """Each frame ``repeat`` times as a tripod-vibrated camera sees it: textured, moved a little, noisy.
    (The work changes at the generator's rate; the camera moves and the grain changes every frame.)"""
    w, h = size
    texture = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 1.5)
    texture = cv2.merge([np.round(6 * texture / texture.std()).astype(np.int16)] * 3)  # paper / desk grain
    pos, vel = np.zeros(3), np.zeros(3)  # dx, dy (pixels), roll (degrees): a damped random walk
    for frame in frames:
        world = cv2.GaussianBlur(cv2.add(frame, texture, dtype=cv2.CV_8U), (0, 0), LENS)
        for _ in range(repeat):
            vel = 0.85 * vel + rng.normal(0, (0.25, 0.25, 0.02))
            pos = 0.97 * pos + vel
            m = cv2.getRotationMatrix2D((w / 2, h / 2), pos[2], 1.0)
            m[:, 2] += pos[:2]
            img = cv2.warpAffine(world, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            grain = cv2.resize(rng.normal(0, GRAIN, (h // 2, w // 2)).astype(np.float32), (w, h))
            yield cv2.add(img, cv2.merge([grain.astype(np.int16)] * 3), dtype=cv2.CV_8U)


def make_filmed(
    path: str | Path,
    photo: np.ndarray,
    seed: int = 0,
    size: tuple[int, int] = SIZE,
    fps: int = FPS,  # a multiple of RENDER_FPS
    script: Script = SCRIPT,
) -> Truth:
    """A 70-s 1280x720 tutorial of ``photo`` as filmed and exported; the generator's ground truth, whose
    frame numbers count frames at RENDER_FPS (times are the video's)."""
    frames, truth = tutorial_frames(photo, size, RENDER_FPS, script, seed)
    repeat = fps // RENDER_FPS
    shaken = _shaken(frames, np.random.default_rng(1000 + seed), size, repeat)
    write_video(path, shaken, fps, size, crf=19, x264={"profile": "high", "x264-params": f"keyint={6 * fps}"})
    return truth
