"""Write the review site: ``index.html`` (per-task counts, drop reasons, curation), one page per task and one
for all tasks (every sequence: grid thumbnail, steps with timestamps or file names, scores, source,
curation state; filters by task, source, split and score range; paged), ``rejected.html``.

Everything is local: pages, ``assets/``, ``data/*.js`` (sequence records as scripts, since browsers refuse
``fetch`` from file://), ``thumbs/``. No CDN, font or external request.
"""

from __future__ import annotations

import html
import json
import time
from importlib import resources
from pathlib import Path

from pipeline import __version__
from pipeline.corpus.existing import open_corpus
from pipeline.io.atomic import write_text
from pipeline.review.collect import Reviewed, collect, present_scores, thumb_writer
from pipeline.work import reason_kind

ASSETS = ("site.js", "site.css")


class SiteFolderError(ValueError):
    """``--out`` names something that is not a folder the site can be written to."""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _page(title: str, body: str, scripts: list[str] = ()) -> str:
    tags = "".join(f'<script src="{_e(s)}"></script>' for s in scripts)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="stylesheet" href="assets/site.css"></head><body>'
        f'<nav><a href="index.html">corpus</a> · <a href="all.html">all sequences</a> · '
        f'<a href="rejected.html">rejected sources</a></nav><main>{body}</main>{tags}</body></html>'
    )


def _table(head: list[str], rows: list[list[str]], attrs: str = "") -> str:
    """Cells are HTML already (escape values before)."""
    return (
        f"<table {attrs}><thead><tr>"
        + "".join(f"<th>{h}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
        + "</tbody></table>"
    )


def task_page(task: str) -> str:
    return f"task-{task}.html"


def _index(r: Reviewed) -> str:
    idx, cur = r.index, r.index.get("curation") or {}
    per = cur.get("per_task", {})
    rows = [
        [
            f'<a href="{_e(task_page(t))}">{_e(t)}</a>',
            str(c.get("train", 0)),
            str(c.get("val", 0)),
            str(c["total"]),
            str(per.get(t, {}).get("drop", 0)),
            str(per.get(t, {}).get("hold-out", 0)),
        ]
        for t, c in idx["per_task"].items()
    ]
    drops = [[_e(reason), str(n)] for reason, n in r.frame_drops.most_common()]
    reasons: dict[str, int] = {}
    for row in r.rejected:
        head = reason_kind(row["reason"])
        reasons[head] = reasons.get(head, 0) + 1
    rejected = [[_e(reason), str(n)] for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1])]
    decisions = [
        [
            _e(next(f"{k} {d[k]}" for k in ("key", "source", "task") if k in d)),
            _e(d["action"]),
            str(d["samples"]),
            _e(d["reason"]),
            _e(d["by"]),
            _e(d["at"]),
        ]
        for d in cur.get("decisions", [])
    ]
    s = idx["sources"]
    body = (
        f"<h1>Corpus review</h1><p id=totals>{idx['samples']} sequences in {len(idx['shards'])} shards; "
        f"sources: {s.get('ok', 0)} ok, {s.get('rejected', 0)} rejected, {s.get('failed', 0)} failed; "
        f"config <code>{_e(idx['config_sha'][:12])}</code>; built with makeanything {_e(idx['version'])}.</p>"
        "<h2>Tasks</h2><p><label>filter tasks <input id=task-filter type=search "
        "placeholder='task id'></label></p>"
        + _table(["task", "train", "validation", "total", "dropped", "held out"], rows, "id=tasks")
        + "<h2>Frames dropped, by reason</h2>"
        + (_table(["reason", "frames"], drops) if drops else "<p>none</p>")
        + f"<h2>Sources rejected, by reason</h2><p><a href=rejected.html>all {len(r.rejected)} rejected or "
        "failed sources</a></p>"
        + (_table(["reason", "sources"], rejected) if rejected else "")
        + "<h2>Curation decisions</h2>"
        + (
            _table(["selector", "action", "samples", "reason", "by", "at"], decisions)
            if decisions
            else "<p>none (makeanything curate CORPUS --drop KEY --reason ...)</p>"
        )
    )
    return _page("Corpus review", body, ["assets/site.js"])


def _rejected(r: Reviewed) -> str:
    rows = [
        [_e(x["task"]), _e(x["uri"]), _e(x["status"]), _e(x["reason"]), str(x["run"])] for x in r.rejected
    ]
    body = (
        "<h1>Rejected and failed sources</h1><p><label>filter <input id=rejected-filter type=search "
        "placeholder='task, source or reason'></label></p>"
        + _table(["task", "source", "status", "reason", "run"], rows, "id=rejected")
    )
    return _page("Rejected sources", body, ["assets/site.js"])


def _sequences(title: str, tasks: list[str], page_size: int, scores: list[str]) -> str:
    """A page of sequences; ``scores``: the names its records have (no score filter when there are none)."""
    config = {"tasks": tasks, "pageSize": page_size, "scores": scores}
    body = (
        f"<h1>{_e(title)}</h1><form id=filters onsubmit='return false'>"
        "<label>task <select id=f-task><option value=''>all</option></select></label>"
        "<label>source <input id=f-source type=search placeholder='id or URI contains'></label>"
        "<label>split <select id=f-split><option value=''>all</option><option>train</option>"
        "<option>val</option></select></label>"
        "<span id=f-scores><label>score <select id=f-score></select></label>"
        "<label>from <input id=f-min type=number step=any></label>"
        "<label>to <input id=f-max type=number step=any></label></span>"
        "<label><input id=f-excluded type=checkbox checked> show excluded</label></form>"
        "<p id=count></p><div class=pager></div><div id=cards></div><div class=pager></div>"
        f"<script>window.MA_PAGE = {json.dumps(config)};</script>"
    )
    return _page(title, body, [f"data/task-{t}.js" for t in tasks] + ["assets/site.js"])


def _data(task: str, records: list[dict]) -> str:
    return (
        f"(window.MA_DATA = window.MA_DATA || {{}})[{json.dumps(task)}] = "
        + json.dumps(records, separators=(",", ":"), ensure_ascii=False)
        + ";\n"
    )


def write_site(corpus: str, out: str | Path, page_size: int = 60, thumb_side: int = 256) -> dict:
    """Write (or update) the site for ``corpus`` into ``out``; returns what it did and measured."""
    t0 = time.perf_counter()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SiteFolderError(f"--out {out}: is a file; give a folder for the site (created if missing)")
    storage, index = open_corpus(corpus)  # NotACorpus before anything is written
    reviewed = Reviewed(index=index)
    thumbs = out / "thumbs"
    collect(storage, index, thumb_writer(thumbs, thumb_side, reviewed), reviewed)
    used = {rec["th"].split("/", 1)[1] for recs in reviewed.records.values() for rec in recs}
    stale = [p for p in thumbs.iterdir() if p.name not in used]
    for p in stale:  # thumbnails of grids a rebuild replaced
        p.unlink()
    for name in ASSETS:
        write_text(
            out / "assets" / name, resources.files("pipeline.review").joinpath("assets", name).read_text()
        )
    tasks = sorted(reviewed.records)
    for task in tasks:
        write_text(out / "data" / f"task-{task}.js", _data(task, reviewed.records[task]))
        scores = present_scores(reviewed.records[task])
        write_text(out / task_page(task), _sequences(f"Task {task}", [task], page_size, scores))
    every = [rec for recs in reviewed.records.values() for rec in recs]
    write_text(out / "all.html", _sequences("All sequences", tasks, page_size, present_scores(every)))
    write_text(out / "rejected.html", _rejected(reviewed))
    write_text(out / "index.html", _index(reviewed))
    return {
        "out": str(out),
        "sequences": sum(len(v) for v in reviewed.records.values()),
        "tasks": len(tasks),
        "rejected": len(reviewed.rejected),
        "snapshot": index.get("snapshot"),
        "vanished_shards": len(reviewed.vanished),
        "thumbs_written": reviewed.thumbs_written,
        "thumbs_reused": reviewed.thumbs_reused,
        "thumbs_removed": len(stale),
        "version": __version__,
        "seconds": round(time.perf_counter() - t0, 3),
    }
