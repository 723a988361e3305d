"""The demo corpus: tutorial-like videos made from scikit-image's bundled photos, a folder of step
images, a talking-head video with no making process (to show a rejection in the report), and a few SVG
and stroke drawings (pipeline.demo.vector)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import skimage.data
import yaml
from PIL import Image

from pipeline.demo.synthetic import Script, _talking_head, make_tutorial, tutorial_frames, write_video
from pipeline.demo.vector import write_vector_demo
from pipeline.io.atomic import write_text

VIDEOS = [  # photo, task, subject
    ("astronaut", "portrait", "an astronaut"),
    ("coffee", "oil-painting", "a cup of coffee"),
    ("chelsea", "painting", "a cat"),
    ("rocket", "illustration", "a rocket on the launch pad"),
]


def _steps_folder(folder: Path, photo: np.ndarray, n: int = 4) -> None:
    """A folder of n step images (the way curators often receive finished step-by-step sets)."""
    folder.mkdir(parents=True, exist_ok=True)
    frames, truth = tutorial_frames(
        photo,
        size=(480, 480),
        script=Script(intro=0, talk=0, process=4, hold=0, outro=0, hand_bursts=0),
        seed=7,
    )
    all_frames = list(frames)
    for k, i in enumerate(np.linspace(0, len(all_frames) - 1, n).astype(int)):
        Image.fromarray(all_frames[i]).save(folder / f"step_{k + 1:02d}.png")


def write_demo(folder: str | Path) -> Path:
    """Write the demo sources and their manifest; returns the manifest path. Skips files already made."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for seed, (name, task, subject) in enumerate(VIDEOS):
        path = folder / f"{name}_{task}.mp4"
        if not path.exists():
            make_tutorial(path, getattr(skimage.data, name)(), seed=seed)
        entries.append({"path": path.name, "task": task, "subject": subject})
    steps = folder / "steps_line_draw"
    if not steps.exists():
        gray = skimage.data.camera()
        _steps_folder(steps, np.stack([gray] * 3, axis=-1))
    entries.append({"dir": steps.name, "task": "line-draw", "subject": "a photographer"})
    talk = folder / "talking_head_only.mp4"
    if not talk.exists():
        write_video(talk, (_talking_head(360, 640, i / 25) for i in range(200)), 25, (640, 360))
    entries.append({"path": talk.name, "task": "painting", "subject": "no process here"})
    entries.extend(write_vector_demo(folder / "drawings"))
    manifest = folder / "manifest.yaml"
    write_text(manifest, yaml.safe_dump({"sources": entries}, sort_keys=False))
    return manifest
