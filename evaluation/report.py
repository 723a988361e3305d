"""The report: per-task tables in the layout of the paper's Table 1 (with bootstrap 95% intervals and
averages), a method comparison, judge agreement, bar plots, progress curves, image strips; written as
Markdown, HTML, JSON summary and one JSONL row per sequence. Every file is written atomically."""

from __future__ import annotations

import html
import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from evaluation.run import RunResult  # noqa: E402
from evaluation.stats import bootstrap_mean  # noqa: E402
from pipeline.io.atomic import write_bytes, write_json, write_jsonl, write_png, write_text  # noqa: E402
from pipeline.taxonomy import Taxonomy  # noqa: E402

# The paper's Table 1 CLIP scores for MakeAnything, by task head (arXiv 2502.01572, Table 1).
PAPER_CLIP = {
    1: 34.40,
    2: 34.41,
    3: 34.24,
    4: 31.46,
    5: 32.25,
    6: 33.84,
    7: 33.03,
    8: 31.82,
    9: 31.68,
    10: 29.35,
    11: 35.25,
    12: 35.25,
    13: 32.27,
    14: 33.83,
    15: 33.46,
    16: 34.44,
    17: 32.83,
    18: 37.30,
    19: 32.93,
    20: 30.76,
    21: 34.20,
}
ERRORS_SHOWN = 50


@dataclass(frozen=True)
class Metric:
    name: str
    path: tuple[str, ...]  # where the value sits in a JSONL row
    label: str
    better: str  # "higher" or "lower"
    digits: int = 3


METRICS = [
    Metric("clip", ("clip", "grid"), "CLIP score, grid vs prompt", "higher", 2),
    Metric("clip_frames", ("clip", "frames_mean"), "CLIP score, frame vs step text", "higher", 2),
    Metric("smoothness", ("coherence", "smoothness"), "Smoothness (mean adjacent similarity)", "higher"),
    Metric("duplicate_rate", ("coherence", "duplicate_rate"), "Duplicate rate", "lower"),
    Metric("jump_rate", ("coherence", "jump_rate"), "Jump rate", "lower"),
    Metric("progress", ("progress", "spearman"), "Progress (Spearman, step vs closeness to final)", "higher"),
    Metric("backtrack_rate", ("progress", "backtrack_rate"), "Backtracking rate", "lower"),
    Metric("detail_trend", ("progress", "detail_trend"), "Detail trend (Spearman, step vs detail)", "higher"),
    Metric("judge_alignment", ("judge", "value", "alignment"), "Judge alignment (1-5)", "higher", 2),
    Metric("judge_coherence", ("judge", "value", "coherence"), "Judge coherence (1-5)", "higher", 2),
    Metric("judge_usability", ("judge", "value", "usability"), "Judge usability (1-5)", "higher", 2),
]


def value(rec: dict, path: tuple[str, ...]) -> float | None:
    for part in path:
        if not isinstance(rec, dict) or rec.get(part) is None:
            return None
        rec = rec[part]
    return float(rec)


class Summary:
    """Bootstrap statistics per metric, per (method, task) and per method averaged over tasks."""

    def __init__(self, result: RunResult, taxonomy: Taxonomy, n: int, seed: int) -> None:
        self.methods = list(dict.fromkeys(r["method"] for r in result.records))
        present = {r["task"] for r in result.records}
        self.tasks = [t.id for t in sorted(taxonomy.tasks.values(), key=lambda t: t.head) if t.id in present]
        self.cells: dict[str, dict[tuple[str, str], dict | None]] = {}
        self.average: dict[str, dict[str, dict | None]] = {}
        for m in METRICS:
            groups: dict[tuple[str, str], list[float]] = {}
            for r in result.records:
                v = value(r, m.path)
                if v is not None:
                    groups.setdefault((r["method"], r["task"]), []).append(v)
            if not groups:
                continue
            self.cells[m.name] = {k: bootstrap_mean([v], n, seed) for k, v in groups.items()}
            self.average[m.name] = {
                meth: bootstrap_mean([groups.get((meth, t), []) for t in self.tasks], n, seed)
                for meth in self.methods
            }

    def describe(self) -> dict:
        return {
            "methods": self.methods,
            "tasks": self.tasks,
            "per_task": {
                m: {f"{meth}/{task}": s for (meth, task), s in cells.items()}
                for m, cells in self.cells.items()
            },
            "average": self.average,
        }


def fmt(stat: dict | None, digits: int) -> str:
    if stat is None:
        return "–"
    return f"{stat['mean']:.{digits}f} [{stat['lo']:.{digits}f}, {stat['hi']:.{digits}f}]"


# --- document blocks, rendered to Markdown and HTML from the same list ------------------------


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]


def task_table(s: Summary, m: Metric, taxonomy: Taxonomy) -> Table:
    paper = m.name == "clip"
    headers = ["Task"] + s.methods + (["Paper (MakeAnything)"] if paper else [])
    rows = []
    for t in s.tasks:
        task = taxonomy[t]
        rows.append(
            [task.name]
            + [fmt(s.cells[m.name].get((meth, t)), m.digits) for meth in s.methods]
            + ([f"{PAPER_CLIP[task.head]:.2f}" if task.head in PAPER_CLIP else "–"] if paper else [])
        )
    heads = [taxonomy[t].head for t in s.tasks if taxonomy[t].head in PAPER_CLIP]
    paper_avg = (
        [f"{np.mean([PAPER_CLIP[h] for h in heads]):.2f} ({len(heads)} tasks)" if heads else "–"]
        if paper
        else []
    )
    rows.append(["**Average**"] + [fmt(s.average[m.name][meth], m.digits) for meth in s.methods] + paper_avg)
    return Table(headers, rows)


def method_table(s: Summary, result: RunResult) -> Table:
    metrics = [m for m in METRICS if m.name in s.cells]
    counts = {meth: sum(r["method"] == meth for r in result.records) for meth in s.methods}
    failed = {meth: sum(e["method"] == meth for e in result.errors) for meth in s.methods}
    headers = ["Method", "sequences", "failed"] + [f"{m.label} ({m.better} is better)" for m in metrics]
    return Table(
        headers,
        [
            [meth, str(counts[meth]), str(failed[meth])]
            + [fmt(s.average[m.name][meth], m.digits) for m in metrics]
            for meth in s.methods
        ],
    )


def pair_table(pairs: list[dict]) -> Table:
    """Per method pair: how often both orders agreed, who won the agreed ones, how often 'first' was picked."""
    rows = []
    for a, b in dict.fromkeys(tuple(p["methods"]) for p in pairs):
        mine = [p for p in pairs if tuple(p["methods"]) == (a, b)]
        decided = [p for p in mine if p["consistent"] is not None]
        answers = [
            o["value"]["better"] for p in mine for o in (p["first_order"], p["second_order"]) if o["ok"]
        ]
        agree = sum(p["consistent"] for p in decided)
        rows.append(
            [
                f"{a} vs {b}",
                str(len(mine)),
                f"{agree}/{len(decided)}" + (f" ({agree / len(decided):.0%})" if decided else ""),
                str(sum(p["winner"] == a for p in mine)),
                str(sum(p["winner"] == b for p in mine)),
                str(len(mine) - agree),
                f"{answers.count(1)}/{len(answers)}" if answers else "–",
            ]
        )
    return Table(
        [
            "Pair",
            "prompts",
            "both orders agree",
            "wins (first named)",
            "wins (second named)",
            "undecided (disagree or failed)",
            "'first image' picked",
        ],
        rows,
    )


def to_markdown(blocks: list) -> str:
    out = []
    for b in blocks:
        if isinstance(b, Table):
            out += ["| " + " | ".join(b.headers) + " |", "|" + "---|" * len(b.headers)]
            out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in b.rows]
            out.append("")
        elif b[0] == "h":
            out += ["#" * b[1] + " " + b[2], ""]
        elif b[0] == "p":
            out += [b[1], ""]
        elif b[0] == "img":
            out += [f"![{b[2]}]({b[1]})", ""]
    return "\n".join(out)


def to_html(blocks: list, title: str) -> str:
    out = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}img{max-width:100%}</style></head><body>",
    ]
    for b in blocks:
        if isinstance(b, Table):
            out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in b.headers) + "</tr>")
            out += [
                "<tr>" + "".join(f"<td>{html.escape(c.replace('**', ''))}</td>" for c in row) + "</tr>"
                for row in b.rows
            ]
            out.append("</table>")
        elif b[0] == "h":
            out.append(f"<h{b[1]}>{html.escape(b[2])}</h{b[1]}>")
        elif b[0] == "p":
            out.append(f"<p>{html.escape(b[1])}</p>")
        elif b[0] == "img":
            out.append(
                f"<figure><img src='{html.escape(b[1])}' alt='{html.escape(b[2])}'>"
                f"<figcaption>{html.escape(b[2])}</figcaption></figure>"
            )
    return "\n".join(out + ["</body></html>"])


# --- pictures ----------------------------------------------------------------------------------


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def bar_plot(s: Summary, m: Metric, taxonomy: Taxonomy) -> bytes:
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(s.tasks) * max(1, len(s.methods))), 3.6))
    width = 0.8 / len(s.methods)
    x = np.arange(len(s.tasks))
    for i, meth in enumerate(s.methods):
        stats = [s.cells[m.name].get((meth, t)) for t in s.tasks]
        mean = [st["mean"] if st else np.nan for st in stats]
        err = np.array([[st["mean"] - st["lo"], st["hi"] - st["mean"]] if st else [0, 0] for st in stats]).T
        ax.bar(x + (i - (len(s.methods) - 1) / 2) * width, mean, width, yerr=err, capsize=2, label=meth)
    ax.set_xticks(x, [taxonomy[t].name for t in s.tasks], rotation=30, ha="right")
    ax.set_title(f"{m.label} ({m.better} is better; 95% bootstrap intervals)")
    ax.legend(fontsize=8)
    return _png(fig)


def progress_plot(records: list[dict], task: str, name: str) -> bytes | None:
    curves: dict[str, list[np.ndarray]] = {}
    for r in records:
        curve = (r.get("progress") or {}).get("curve")
        if r["task"] == task and curve:
            curves.setdefault(r["method"], []).append(np.asarray(curve))
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.6))
    grid = np.linspace(0, 1, 21)
    for meth, cs in curves.items():
        ys = np.stack([np.interp(grid, np.linspace(0, 1, len(c)), c) for c in cs])
        mean = ys.mean(0)
        ax.plot(grid, mean, label=f"{meth} (n={len(cs)})")
        ax.fill_between(grid, np.percentile(ys, 25, 0), np.percentile(ys, 75, 0), alpha=0.2)
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="steady progress")
    ax.set_xlabel("step (fraction of the sequence)")
    ax.set_ylabel("progress to the final frame")
    ax.set_title(f"{name}: mean progress curve (band: 25-75%)")
    ax.legend(fontsize=8)
    return _png(fig)


def strip_sheet(by_method: dict[str, Image.Image]) -> Image.Image:
    """The strips of one prompt stacked, one labelled row per method."""
    band = 18
    width = max(im.width for im in by_method.values())
    sheet = Image.new("RGB", (width, sum(im.height + band for im in by_method.values())), (255, 255, 255))
    draw, y = ImageDraw.Draw(sheet), 0
    for meth, im in by_method.items():
        draw.text((4, y + 3), meth, fill=(0, 0, 0))
        sheet.paste(im, (0, y + band))
        y += im.height + band
    return sheet


# --- the whole report --------------------------------------------------------------------------


def write_report(result: RunResult, out: Path, taxonomy: Taxonomy, run_info: dict, n: int, seed: int) -> Path:
    """Write everything under `out`; returns the Markdown report's path. The run info names the snapshot
    each corpus input was read at."""
    if result.snapshots:
        run_info = {**run_info, "snapshots": result.snapshots}
    write_jsonl(out / "sequences.jsonl", result.records)
    write_jsonl(out / "errors.jsonl", result.errors)
    write_jsonl(out / "judge-pairs.jsonl", result.pairs)
    s = Summary(result, taxonomy, n, seed)
    write_json(out / "summary.json", {"run": run_info, **s.describe()})

    blocks: list = [
        ("h", 1, "Evaluation report"),
        ("p", " · ".join(f"{k}: {v}" for k, v in run_info.items())),
        (
            "p",
            f"{len(result.records)} sequences evaluated, {len(result.errors)} inputs failed "
            "(errors.jsonl). Cells: mean [95% bootstrap interval]; averages are means of "
            "per-task means, resampled within each task.",
        ),
    ]
    if result.records:
        blocks += [("h", 2, "Method comparison (averaged over tasks)"), method_table(s, result)]
        if "clip" in s.cells:
            blocks += [
                ("h", 2, "Table 1 layout: CLIP score per task"),
                (
                    "p",
                    "The paper does not name its CLIP model or prompt text; compare trends, "
                    "not absolute values, unless the same model is used.",
                ),
                task_table(s, METRICS[0], taxonomy),
            ]
        blocks.append(("h", 2, "Per-task results"))
        for m in METRICS:
            if m.name not in s.cells:
                continue
            path = write_bytes(out / "plots" / f"bar_{m.name}.png", bar_plot(s, m, taxonomy))
            table = [] if m.name == "clip" else [task_table(s, m, taxonomy)]  # clip's is the Table 1 above
            blocks += [
                ("h", 3, f"{m.label} ({m.better} is better)"),
                *table,
                ("img", str(path.relative_to(out)), m.label),
            ]
        blocks.append(("h", 2, "Progress curves"))
        for t in s.tasks:
            png = progress_plot(result.records, t, taxonomy[t].name)
            if png:
                path = write_bytes(out / "plots" / f"progress_{t}.png", png)
                blocks.append(("img", str(path.relative_to(out)), f"{taxonomy[t].name} progress"))
    if result.pairs:
        blocks += [("h", 2, "Judge: side by side, asked in both orders"), pair_table(result.pairs)]
    if result.strips:
        blocks.append(("h", 2, "Image strips (frames in step order)"))
        for i, ((task, prompt), by_method) in enumerate(result.strips.items()):
            path = write_png(out / "strips" / f"{i:04d}_{task}.png", strip_sheet(by_method))
            blocks.append(("img", str(path.relative_to(out)), f"{taxonomy[task].name}: {prompt}"))
    if result.errors:
        blocks += [
            ("h", 2, f"Inputs that failed (first {ERRORS_SHOWN}; all in errors.jsonl)"),
            Table(
                ["Source", "Method", "Problem"],
                [[e["source"], e["method"] or "", e["problem"]] for e in result.errors[:ERRORS_SHOWN]],
            ),
        ]
    write_text(out / "report.html", to_html(blocks, "Evaluation report"))
    return write_text(out / "report.md", to_markdown(blocks))
