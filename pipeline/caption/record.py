"""The sample json's ``caption`` record and the training text made from it (docs/FORMAT.md, pipeline.corpus.schema).

Same keys for every sample; the VLM's fields are null until a model wrote them.
"""

from __future__ import annotations

from pipeline.layout import Layout


def template_record(template: str) -> dict:
    """The record of a sample that has only the taxonomy's one-line caption."""
    return {
        "text": template,
        "template": template,
        "process": None,
        "steps": None,
        "model": None,
        "prompt_sha": None,
    }


def template_of(caption: dict) -> str:
    """The one-line template caption (corpora written before ``template`` existed hold it only in ``text``)."""
    return caption.get("template") or caption["text"]


def layout_prefix(layout: Layout) -> str:
    """The grid statement the trainer and the released data start every caption with."""
    return f"{layout.rows}*{layout.cols} of {layout.frames} sub-images"


def hierarchical_text(layout: Layout, process: str, steps: list[str]) -> str:
    """The paper's form on one line: layout prefix, process line, then ``<image-k> step`` for each step."""
    parts = [f"{layout_prefix(layout)}, {process.rstrip(' ,;')},"]
    parts += [f"<image-{i}> {text}" for i, text in enumerate(steps, 1)]
    return " ".join(parts)


def vlm_record(
    template: str, layout: Layout, process: str, steps: list[str], model: str, prompt_sha: str
) -> dict:
    """The record of a sample a VLM captioned; ``text`` (= KEY.txt) is the hierarchical caption."""
    return {
        "text": hierarchical_text(layout, process, steps),
        "template": template,
        "process": process,
        "steps": list(steps),
        "model": model,
        "prompt_sha": prompt_sha,
    }
