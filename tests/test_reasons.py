"""Rejected sources are counted by the kind of their reason (report.json, report.md, the review site), not by
each reason's particulars, and missing sources are told apart from sources that held no making process."""

from __future__ import annotations

from pipeline.corpus.source_result import SourceResult
from pipeline.report.run_report import RunReport
from pipeline.work import is_missing, reason_kind


def test_a_reason_kind_drops_the_particulars():
    assert reason_kind("no making process found in 7 shot(s)") == reason_kind(
        "no making process found in 2 shot(s)"
    )
    assert reason_kind("file not found: /data/a.mp4") == "file not found"
    assert reason_kind("truncated: frames stop at 3.5s of a 10.0s video") == "truncated"
    assert is_missing("folder holds no images: /x (looked for .jpg)") and is_missing(
        "no files match: clips/*.mp4"
    )
    assert not is_missing("no making process found in 7 shot(s)")


def test_the_run_report_groups_rejections_by_kind(tmp_path):
    report = RunReport()
    for n, reason in enumerate(
        [
            "no making process found in 7 shot(s)",
            "no making process found in 2 shot(s)",
            "file not found: /a.mp4",
        ]
    ):
        report.add(
            SourceResult(
                entry=n, uri=f"{n}.mp4", task="painting", sha256="", status="rejected", reason=reason
            )
        )
    data = report.write(tmp_path, {}, [], 1.0)
    assert data["drops"]["sources"] == {
        "rejected: no making process found in N shot(s)": 2,
        "rejected: file not found": 1,
    }
