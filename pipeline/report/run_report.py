"""Run report: report.json (totals, per task, one row per source, drops by reason, time per stage,
throughput), report.md, and a contact-sheet PNG per task."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

from pipeline.corpus.shards import ShardInfo
from pipeline.corpus.snapshots import reports
from pipeline.corpus.source_result import SourceResult
from pipeline.io.atomic import write_png, write_text
from pipeline.io.redact import redact_json
from pipeline.report.contact_sheet import contact_sheet
from pipeline.work import reason_kind


class RunReport:
    """Accumulates results as they stream in; keeps only small thumbnails' worth of grids per task."""

    def __init__(self, sheet_items: int = 60) -> None:
        self.rows: list[dict] = []
        self.per_task: Counter = Counter()
        self.drops: Counter = Counter()
        self.rejections: Counter = Counter()
        self.stage_seconds: Counter = Counter()
        self.video_seconds = 0.0
        self.sheets: dict[str, list[tuple[str, bytes, bytes | None]]] = defaultdict(list)
        self.sheet_items = sheet_items

    def add(self, res: SourceResult) -> None:
        self.rows.append(res.row())
        self.drops.update(res.drops)
        self.stage_seconds.update(res.seconds)
        if res.status != "ok":
            self.rejections[f"{res.status}: {reason_kind(res.reason)}"] += 1
        self.video_seconds += res.probe.get("duration") or 0.0
        for s in res.samples:
            self.per_task[res.task] += 1
            if len(self.sheets[res.task]) < self.sheet_items:
                self.sheets[res.task].append((s.key, s.jpg, res.shots_png))

    def write(self, out: Path, header: dict, shards: list[ShardInfo], wall: float) -> dict:
        status = Counter(r["status"] for r in self.rows)
        report = {
            **header,
            "duration_s": round(wall, 3),
            "totals": {
                "sources": len(self.rows),
                **{k: status.get(k, 0) for k in ("ok", "rejected", "failed")},
                "duplicates": status.get("duplicate", 0),
                "samples": sum(self.per_task.values()),
                "shards": len(shards),
            },
            "per_task": dict(sorted(self.per_task.items())),
            "drops": {
                "frames": dict(self.drops.most_common()),
                "sources": dict(self.rejections.most_common()),
            },
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
            "throughput": {
                "sources_per_s": round(len(self.rows) / wall, 4) if wall else None,
                "video_seconds_per_s": round(self.video_seconds / wall, 3) if wall else None,
            },
            "shards": [
                {"name": s.name, "samples": s.samples, "bytes": s.bytes, "sha256": s.sha256} for s in shards
            ],
            "sources": sorted(self.rows, key=lambda r: r["entry"]),
        }
        report = redact_json(report)  # no credentials (caption URL, scheduler, a reason) written
        sheets = {}
        for task, items in sorted(self.sheets.items()):
            name = f"contact-{task}.png"
            write_png(out / name, contact_sheet(items, f"{task}: {self.per_task[task]} sequences"))
            sheets[task] = name
        write_text(out / "report.json", json.dumps(report, indent=2, default=str))
        write_text(out / "report.md", _markdown(report, sheets))
        return report


def _markdown(r: dict, sheets: dict[str, str]) -> str:
    t = r["totals"]
    lines = [
        "# Build report",
        "",
        f"{t['sources']} sources: {t['ok']} ok, {t['rejected']} rejected, {t['failed']} failed, "
        f"{t.get('duplicates', 0)} duplicates (processed once); "
        f"{t['samples']} sequences in {t['shards']} shards; {r['duration_s']:.1f} s.",
        "",
        f"{r.get('clip', '')}",
        "",
        "## Sequences per task",
        "",
        "| task | sequences |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in r["per_task"].items()]
    lines += ["", "## Why frames were dropped", "", "| reason | frames |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in r["drops"]["frames"].items()]
    lines += [
        "",
        "## Sources without sequences",
        "",
        "| entry | source | status | reason |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {s['entry']} | `{s['uri']}` | {s['status']} | {s['reason']} |"
        for s in r["sources"]
        if s["status"] != "ok"
    ]
    noted = [s for s in r["sources"] if s["status"] == "ok" and s["notes"]]
    if noted:  # e.g. a folder's steps that no sequence uses, unreadable images
        lines += ["", "## Notes on sources with sequences", "", "| entry | source | note |", "|---|---|---|"]
        lines += [f"| {s['entry']} | `{s['uri']}` | {n} |" for s in noted for n in s["notes"]]
    lines += caption_lines(r.get("caption"))
    lines += ["", "## Time per stage (s, summed over workers)", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in r["stage_seconds"].items()]
    lines += ["", "## Contact sheets", ""]
    lines += [f"### {task}\n\n![{task}]({name})\n" for task, name in sheets.items()]
    return "\n".join(lines) + "\n"


def caption_lines(c: dict | None) -> list[str]:
    """The VLM caption section: counts, cost, and every sample that kept its template caption, with why."""
    if not c:
        return []
    retries = ", ".join(f"{k} {v}" for k, v in c["retries"].items()) or "none"
    lines = [
        "",
        "## VLM captions",
        "",
        f"{c['captioned']} captioned by `{c['model']}` ({c['from_cache']} from the cache), {c['fallback']} kept "
        f"the template caption; {c['requests']} requests (retries: {retries}), {c['prompt_tokens']} prompt + "
        f"{c['completion_tokens']} completion tokens"
        + (
            f"; budget {c['budget']} requests, {c['not_asked_budget']} samples not asked"
            if c["budget"] is not None
            else ""
        )
        + ".",
    ]
    if c["fallbacks"]:
        lines += ["", "| sample | why it kept the template caption |", "|---|---|"]
        lines += [f"| `{k}` | {v} |" for k, v in c["fallbacks"].items()]
    return lines


def corpus_report(index: dict, latest: str, run: int) -> str:
    """The root ``report.md``: what the corpus holds now (from dataset.json), every run with a link to its
    own report, then the latest run's report (headings one level down, links into ``reports/run-NNNN/``),
    so a run that changed nothing does not make the corpus look empty."""
    folder = reports(run)
    splits = sorted({k for c in index["per_task"].values() for k in c} - {"total"})
    lines = [
        "# Corpus",
        "",
        f"{index['samples']} sequences in {len(index['shards'])} shards (snapshot {index.get('snapshot')}, "
        f"config {index['config_sha'][:12]}); sources: "
        + ", ".join(f"{v} {k}" for k, v in index["sources"].items())
        + ".",
        "",
        "| task | " + " | ".join(splits) + " | total |",
        "|---" * (len(splits) + 2) + "|",
    ]
    lines += [
        f"| {t} | " + " | ".join(str(c.get(s, 0)) for s in splits) + f" | {c['total']} |"
        for t, c in index["per_task"].items()
    ]
    lines += ["", "## Runs", "", "| run | command | started | counts |", "|---|---|---|---|"]
    lines += [
        f"| [{h['run']}]({reports(h['run'])}/) | {h.get('command', 'build')} | {h['started']} | "
        + ", ".join(f"{k} {v}" for k, v in h.get("counts", {}).items())
        + " |"
        for h in index.get("history", [])
    ]
    lines += ["", f"## Latest run: {run} ([{folder}/]({folder}/))", ""]
    for line in latest.splitlines():
        line = "##" + line if line.startswith("#") else line
        lines.append(line.replace("](contact-", f"]({folder}/contact-"))
    return "\n".join(lines) + "\n"
