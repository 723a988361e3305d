"""What one source gave a run: its samples, or why there are none, plus counters. Made on a worker
(pipeline.run.worker), consumed by the shard committer, the ledger and the run report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from pipeline.corpus.shards import Sample
from pipeline.io.redact import redact_text
from pipeline.work import Source

# duplicate: the same content as a source listed before it in this run; never a ledger row (the ledger
# remembers only its signature), so the build report, inspect and the review site count rejections alike
Status = Literal["ok", "rejected", "failed", "duplicate"]


@dataclass
class SourceResult:
    """What the driver needs from a source: its samples, or why there are none, plus counters."""

    entry: int
    uri: str
    task: str
    sha256: str
    status: Status
    reason: str = ""
    samples: list[Sample] = field(default_factory=list)
    drops: Counter = field(default_factory=Counter)
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    probe: dict = field(default_factory=dict)
    shots_png: bytes | None = None  # the shot strip for the contact sheet (pipeline.report.shot_strip)
    gates: list[dict] = field(
        default_factory=list
    )  # every test measured, with its value and threshold (Work.gates)

    @classmethod
    def of(cls, source: Source, sha256: str, status: Status, reason: str = "") -> SourceResult:
        """A result that carries the source's identity: the one way results are made. The reason goes to
        the report and the ledger: any URL in it (a download's error) is redacted."""
        return cls(
            entry=source.entry,
            uri=source.uri,
            task=source.task.id,
            sha256=sha256,
            status=status,
            reason=redact_text(reason),
        )

    def row(self) -> dict:
        """The report's one row per source."""
        return {
            "entry": self.entry,
            "uri": self.uri,
            "task": self.task,
            "sha256": self.sha256,
            "status": self.status,
            "reason": self.reason,
            "samples": [s.key for s in self.samples],
            "drops": dict(self.drops),
            "seconds": self.seconds,
            "notes": self.notes,
            "gates": self.gates,
        }
