"""What the VLM is asked for one sequence, and strict checking of what it answers.

The taxonomy's (or config's) instruction says what to describe; the answer contract (one JSON object,
``process`` and exactly N ``steps``) is added here, so a curator tuning one task's wording cannot lose it.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass

from PIL import Image

from pipeline.layout import Layout, split
from pipeline.taxonomy import Task

SYSTEM = (
    "You annotate step-by-step making processes for a dataset of procedural image sequences. "
    "Answer with one JSON object and nothing else."
)
CONTRACT = (
    'Answer with exactly this JSON object: {{"process": "<the process caption, one line>", '
    '"steps": [<exactly {frames} strings, one short sentence per image, image 1 first>]}}.'
)
FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
MARKER = re.compile(r"<image-\d+>")


class MalformedAnswer(ValueError):
    """The answer is not the JSON object the contract asks for; the message says how."""


@dataclass(frozen=True)
class Question:
    """One sequence's question without its images (enough to look the answer up in the cache)."""

    system: str
    user: str
    steps: int
    prompt_sha: str


def prompt_sha(template: str, images: str, image_side: int) -> str:
    """Names the wording a caption came from (independent of the subject it was filled with): a caption is
    redone when this or the model changes."""
    spec = {
        "system": SYSTEM,
        "template": template,
        "contract": CONTRACT,
        "images": images,
        "side": image_side,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def reading_order(layout: Layout) -> str:
    """The grid's step order in words, for models shown the whole grid."""
    cells = ", ".join(
        f"step {i} at row {r + 1} column {c + 1}" for i, (r, c) in enumerate(layout.positions, 1)
    )
    return (
        f"The image is a grid of {layout.rows} rows and {layout.cols} columns holding the {layout.frames} "
        f"steps, where 'image k' means step k: {cells}."
    )


def _jpeg(img: Image.Image, side: int) -> bytes:
    img = img.convert("RGB")
    if max(img.size) > side:
        img.thumbnail((side, side), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def question(
    task: Task, layout: Layout, subject: str | None, template: str | None, images: str, image_side: int
) -> Question:
    """The texts for one sample: the task's wording (``template`` overrides it), the reading order when the
    grid is sent whole, and the answer contract."""
    wording = template or task.caption_prompt
    user = task.caption_request(subject, wording)
    if images == "grid":
        user += " " + reading_order(layout)
    user += " " + CONTRACT.format(frames=layout.frames)
    return Question(SYSTEM, user, layout.frames, prompt_sha(wording, images, image_side))


def pictures(grid_jpg: bytes, layout: Layout, images: str, image_side: int) -> list[bytes]:
    """What is sent: the step frames cut from the grid in step order, or the grid itself (JPEG bytes)."""
    with Image.open(io.BytesIO(grid_jpg)) as grid:
        grid.load()
        if images == "grid":
            return [_jpeg(grid, image_side)]
        return [_jpeg(frame, image_side) for frame in split(grid, layout)]


def _one_line(text: object, what: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise MalformedAnswer(f"{what} is not a non-empty string")
    line = " ".join(text.split())
    if MARKER.search(line):
        raise MalformedAnswer(f"{what} contains an <image-k> marker")
    return line


def parse_answer(raw: str, steps: int) -> tuple[str, list[str]]:
    """``(process, steps)`` from the model's answer, or MalformedAnswer; never repaired or guessed."""
    text = raw.strip()
    fenced = FENCE.match(text)
    try:
        obj = json.loads(fenced.group(1) if fenced else text)
    except ValueError as e:
        raise MalformedAnswer(f"not JSON ({e})") from e
    if not isinstance(obj, dict):
        raise MalformedAnswer("JSON but not an object")
    listed = obj.get("steps")
    if not isinstance(listed, list):
        raise MalformedAnswer("'steps' missing or not a list")
    if len(listed) != steps:
        raise MalformedAnswer(f"{len(listed)} steps for {steps} images")
    return _one_line(obj.get("process"), "'process'"), [
        _one_line(s, f"step {i}") for i, s in enumerate(listed, 1)
    ]


def response_format(kind: str, steps: int) -> dict | None:
    """The chat-completions ``response_format`` asking for the contract's JSON (None: the prompt alone asks)."""
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = {
            "type": "object",
            "additionalProperties": False,
            "required": ["process", "steps"],
            "properties": {
                "process": {"type": "string"},
                "steps": {"type": "array", "items": {"type": "string"}, "minItems": steps, "maxItems": steps},
            },
        }
        return {
            "type": "json_schema",
            "json_schema": {"name": "sequence_caption", "strict": True, "schema": schema},
        }
    return None
