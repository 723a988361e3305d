"""The task taxonomy (manifests/tasks.yaml): ids, label paths, LoRA heads, layouts, captions, CLIP prompts."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from manifests import bundled
from pipeline.layout import Layout

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]*$")


class Task(BaseModel):
    """One task: what the pipeline builds for it and which LoRA head the trainer uses."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    path: str = Field(description="hierarchical label, domain/.../task")
    head: int = Field(ge=1, description="index of the task's B head (1-based, as the released checkpoints)")
    frames: int = Field(ge=2)
    layout: Layout
    process: str = Field(description="phrase used in captions, e.g. 'oil painting'")
    prompts: tuple[str, ...] = Field(min_length=1, description="positive CLIP prompts")
    caption_template: str
    caption_prompt: str = Field(description="what the caption stage asks the VLM (docs/CAPTION.md)")

    @model_validator(mode="after")
    def _check(self) -> Task:
        if not SLUG.match(self.id):
            raise ValueError(f"task id {self.id!r} must be a lowercase slug (letters, digits, '-')")
        if self.frames != self.layout.frames:
            raise ValueError(
                f"task {self.id}: {self.frames} frames do not fill a "
                f"{self.layout.rows}x{self.layout.cols} layout"
            )
        return self

    def caption(self, subject: str | None = None) -> str:
        """The released data's caption style: '3*3 of 9 sub-images, step-by-step portrait painting process, 1 girl'."""
        return self.caption_template.format(
            rows=self.layout.rows,
            cols=self.layout.cols,
            frames=self.frames,
            process=self.process,
            name=self.name,
            subject=subject or "",
            subject_suffix=f", {subject}" if subject else "",
        )

    def caption_request(self, subject: str | None, template: str | None = None) -> str:
        """The VLM's instruction for one sequence of this task (``template`` overrides the taxonomy's)."""
        return (template or self.caption_prompt).format(
            rows=self.layout.rows,
            cols=self.layout.cols,
            frames=self.frames,
            process=self.process,
            name=self.name,
            subject=subject or "",
            subject_suffix=f", {subject}" if subject else "",
            subject_line=f" The subject is {subject}." if subject else "",
        )

    def describe(self) -> dict:
        """The shard-json `task` record."""
        return {"id": self.id, "name": self.name, "path": self.path, "head": self.head}


class Taxonomy(BaseModel):
    """All tasks by id; heads unique so every task owns one LoRA head."""

    tasks: dict[str, Task]

    @model_validator(mode="after")
    def _unique_heads(self) -> Taxonomy:
        seen: dict[int, str] = {}
        for t in self.tasks.values():
            if t.head in seen:
                raise ValueError(f"tasks {seen[t.head]} and {t.id} share head {t.head}")
            seen[t.head] = t.id
        return self

    @classmethod
    def load(cls, path: str | Path | None = None) -> Taxonomy:
        """Read a taxonomy YAML (default: the bundled manifests/tasks.yaml)."""
        path = Path(path) if path else bundled("tasks.yaml")
        raw = yaml.safe_load(path.read_text())
        layouts = {name: Layout(**spec) for name, spec in (raw.get("layouts") or {}).items()}
        template = raw.get(
            "caption_template",
            "{rows}*{cols} of {frames} sub-images, step-by-step {process} process{subject_suffix}",
        )
        prompt = raw.get(
            "caption_prompt",
            "The {frames} images are the steps of one {process} process, "
            "in order.{subject_line} Describe the process and each step.",
        )
        tasks = {}
        for entry in raw["tasks"]:
            entry = dict(entry)
            lay = entry.get("layout")
            if isinstance(lay, str):
                if lay not in layouts:
                    raise ValueError(f"{path}: task {entry.get('id')} names unknown layout {lay!r}")
                entry["layout"] = layouts[lay]
            entry.setdefault("caption_template", template)
            entry.setdefault("caption_prompt", prompt)
            if entry["id"] in tasks:
                raise ValueError(f"{path}: task id {entry['id']} listed twice")
            tasks[entry["id"]] = Task(**entry)
        return cls(tasks=tasks)

    def __getitem__(self, task_id: str) -> Task:
        return self.tasks[task_id]

    def __contains__(self, task_id: object) -> bool:
        return task_id in self.tasks

    def by_head(self, head: int) -> Task:
        for t in self.tasks.values():
            if t.head == head:
                return t
        raise KeyError(f"no task has head {head}")
