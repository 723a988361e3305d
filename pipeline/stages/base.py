"""The one-method stage interface."""

from __future__ import annotations

from typing import Protocol

from pipeline.work import Work


class Stage(Protocol):
    name: str

    def __call__(self, work: Work) -> Work:
        """Transform the work item; raise Reject when the source yields nothing."""
        ...
