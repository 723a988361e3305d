"""A decision's tests with their measured values and thresholds, so that a reason states the numbers
the decision rests on and a curator can see how close a source came (report.json, the sample json)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Gate:
    """One test: ``value`` must be at least (``at_least``) or at most ``threshold``."""

    name: str
    value: float
    threshold: float
    at_least: bool = True

    @property
    def passed(self) -> bool:
        return self.value >= self.threshold if self.at_least else self.value <= self.threshold

    def record(self) -> dict:
        """The gate as the report and the sample json give it (docs/FORMAT.md, ``scores.process.gates``)."""
        return {
            "name": self.name,
            "value": round(float(self.value), 4),
            "threshold": float(self.threshold),
            "test": ">=" if self.at_least else "<=",
            "passed": self.passed,
        }

    def says(self) -> str:
        """The comparison in words, e.g. 'spread 0.13, needs >= 0.25'."""
        return f"{self.name} {self.value:.3g}, needs {'>=' if self.at_least else '<='} {self.threshold:.3g}"


def first_failed(gates: list[Gate]) -> Gate | None:
    """The first gate, in the order given, that did not pass."""
    return next((g for g in gates if not g.passed), None)
