"""What every input adapter produces: one sequence in step order, or an error naming the input and the problem."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image


@dataclass
class Sequence:
    """One procedural sequence of one method, frames already in step order."""

    key: str
    method: str
    task: str
    prompt: str
    frames: list[Image.Image]
    grid: Image.Image | None  # the image as the method delivered it; None when it delivered frames
    source: str  # where it came from (file, shard member), for error messages and the JSONL
    original_frames: int  # frame count before any resampling (videos: decoded frames)
    steps: list[str] | None = None  # one text per step, when the caption has them
    layout: dict | None = None  # the declared grid layout (rows, cols, order), when there was a grid


@dataclass
class InputError:
    """An input that could not be read; recorded in the report while the run goes on."""

    source: str
    problem: str
    method: str | None = None

    def describe(self) -> dict:
        return {"source": self.source, "problem": self.problem, "method": self.method}
