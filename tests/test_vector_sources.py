"""SVG and stroke sources: progressive rendering on small SVGs written here (defs, gradients, clip paths,
masks, `use`, transforms, compound paths), QuickDraw-style ndjson, bad input item by item, archives,
and a refresh that renders only new or changed items."""

from __future__ import annotations

import http.server
import io
import json
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import resvg_py
from PIL import Image

from pipeline.config import BuildConfig, VectorConfig
from pipeline.corpus.schema import conform, features
from pipeline.drawings.emoji_names import subject_from_name
from pipeline.drawings.render import render
from pipeline.drawings.svg import SvgDrawing
from pipeline.intake.manifest import ManifestError, load_manifest
from pipeline.layout import split
from pipeline.run.driver import build
from pipeline.run.worker import run_source
from pipeline.stages.chain import build_stages
from pipeline.stages.draw import DrawProgressively
from pipeline.taxonomy import Taxonomy
from pipeline.work import Reject, Source, Work
from tests.conftest import write_manifest

TAXONOMY = Taxonomy.load()
FAST = BuildConfig.model_validate({"cluster": {"workers": 1, "processes": False}, "clip": {"enabled": False}})
HEAD = (
    '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
    'viewBox="0 0 100 100">'
)
DEFS = """<defs>
  <linearGradient id="sky" x1="0" y1="0" x2="1" y2="0">
    <stop offset="0" stop-color="#e33"/><stop offset="1" stop-color="#33e"/></linearGradient>
  <radialGradient id="sun"><stop offset="0" stop-color="#ff0"/><stop offset="1" stop-color="#f80"/></radialGradient>
  <clipPath id="half"><rect x="0" y="0" width="30" height="100"/></clipPath>
  <mask id="hole"><rect width="100" height="100" fill="#fff"/><circle cx="75" cy="75" r="8" fill="#000"/></mask>
  <path id="leaf" d="M0 0 q10 -10 20 0 q-10 10 -20 0z"/>
</defs>"""
# (element, drawable units in it): paint order = document order
ELEMENTS = [
    ('<rect x="5" y="5" width="90" height="40" fill="url(#sky)"/>', 1),
    (
        '<g transform="translate(10 50) scale(0.8)"><circle cx="30" cy="30" r="25" fill="url(#sun)" '
        'clip-path="url(#half)"/></g>',
        1,
    ),
    ('<use href="#leaf" x="40" y="60" fill="#2a2"/>', 1),
    ('<use xlink:href="#leaf" transform="translate(40 85) rotate(-30)" fill="#070"/>', 1),
    ('<rect x="55" y="55" width="40" height="40" fill="#964" mask="url(#hole)" opacity="0.9"/>', 1),
    ('<circle cx="20" cy="20" r="4" fill="#000" opacity="0"/>', 1),  # paints nothing visible
    ('<path d="M5 97 h25 m10 0 h25 m10 0 h25" stroke="#000" stroke-width="3"/>', 3),  # relative moves
]


def svg(elements: list[str], defs: str = DEFS) -> str:
    return HEAD + defs + "".join(elements) + "</svg>"


def direct(text: str, side: int) -> np.ndarray:
    """The renderer alone on a whole document: the reference every prefix is compared with."""
    png = resvg_py.svg_to_bytes(svg_string=text, width=side, height=side, background="#ffffff")
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def changed(a: np.ndarray, b: np.ndarray, tol: int = 24) -> float:
    return float((np.abs(np.asarray(a, int) - np.asarray(b, int)).max(axis=2) > tol).mean())


def drawing_source(path: Path, task: str = "emoji", kind: str = "svg") -> Source:
    return Source(uri=path.name, path=str(path), task=TAXONOMY[task], kind=kind)  # type: ignore[arg-type]


def test_every_prefix_keeps_gradients_clip_paths_masks_use_and_transforms():
    d = SvgDrawing(svg([e for e, _ in ELEMENTS]).encode(), VectorConfig())
    assert len(d.units) == sum(n for _, n in ELEMENTS)
    shown = 0
    previous = None
    for k, (_, units) in enumerate(ELEMENTS, 1):
        shown += units
        ours = render(d.document(shown, 128)).astype(int)
        reference = direct(svg([e for e, _ in ELEMENTS[:k]]), 128)
        assert np.abs(ours - reference).max() <= 2, (
            f"prefix of {k} elements differs from the document cut there"
        )
        if previous is not None and k != 6:
            assert changed(ours, previous) > 0.001, f"element {k} added nothing"
        previous = ours
    first = render(d.document(1, 128)).astype(int)
    left, right = first[40, 12], first[40, 115]
    assert left[0] > 180 > left[2] and right[2] > 180 > right[0]  # the gradient resolved, red to blue
    two = render(d.document(2, 128)).astype(int)
    assert changed(two[64:, 45:70], first[64:, 45:70]) == 0  # the clip path cut the sun's right part
    # part of a compound path: the prefix of its data up to the end of the second subpath
    part = render(d.document(shown - 1, 128)).astype(int)
    assert (
        np.abs(
            part
            - direct(
                svg(
                    [e for e, _ in ELEMENTS[:-1]]
                    + ['<path d="M5 97 h25 m10 0 h25 " stroke="#000" stroke-width="3"/>']
                ),
                128,
            )
        ).max()
        <= 2
    )


def test_steps_follow_paint_order_each_adds_something_and_the_last_is_the_whole_file(tmp_path):
    path = tmp_path / "scene.svg"
    path.write_text(svg([e for e, _ in ELEMENTS]))
    config = BuildConfig()
    res = run_source(drawing_source(path), "a" * 64, build_stages(config, kind="svg"), config)
    assert res.status == "ok", res.reason
    meta = res.samples[0].meta
    layout = TAXONOMY["emoji"].layout
    cells = split(Image.open(io.BytesIO(res.samples[0].jpg)), layout)
    shown = [f["source_frame"] for f in meta["frames"]]
    assert shown == sorted(shown) and len(set(shown)) == 4 and shown[-1] == 9
    assert 6 not in shown  # the invisible element is never a step of its own
    for a, b in zip(cells, cells[1:]):
        assert changed(a, b) > 0.005
    whole = direct(path.read_text(), layout.content)
    assert changed(cells[-1], whole) <= 0.01
    progress = [f["progress"] for f in meta["frames"]]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert meta["source"]["kind"] == "svg" and meta["source"]["frame_count"] == 9
    assert (meta["source"]["width"], meta["source"]["height"]) == (100, 100)


def test_steps_are_spread_by_added_coverage_not_by_element_count(tmp_path):
    dots = [f'<circle cx="{8 + 2 * i}" cy="{10 + 8 * i}" r="2" fill="#000"/>' for i in range(10)]
    big = [
        '<rect x="0" y="0" width="33" height="100" fill="#c00"/>',
        *dots,
        '<rect x="33" y="0" width="34" height="100" fill="#0c0"/>',
        '<rect x="67" y="0" width="33" height="100" fill="#00c"/>',
    ]
    path = tmp_path / "thirds.svg"
    path.write_text(svg(big, defs=""))
    work = DrawProgressively(VectorConfig())(Work(source=drawing_source(path)))
    frames = work.sequences[0].frames
    shown = [f.source_frame for f in frames]
    assert shown[0] == 1 and shown[-1] == 13 and 12 in shown  # by element count it would be 1, 5, 9, 13
    assert frames[shown.index(12)].scores["added"] > 0.3  # the middle third is one step's addition


def test_fewer_visible_additions_than_steps_is_rejected_with_the_count(tmp_path):
    path = tmp_path / "three.svg"
    path.write_text(  # gradient fills: shapes that are not traced either (plain colours would be)
        svg(
            [
                '<rect width="50" height="50" fill="url(#sky)"/>',
                '<circle cx="70" cy="70" r="20" fill="url(#sun)"/>',
                '<rect x="10" y="60" width="20" height="20" fill="url(#sky)"/>',
                '<rect width="100" height="100" display="none"/>',
            ],
        )
    )
    with pytest.raises(
        Reject, match=r"too few visible additions: 3 elements in all, a 4-step sequence needs 4$"
    ):
        DrawProgressively(VectorConfig())(Work(source=drawing_source(path)))


def test_rendering_time_per_item_is_bounded(tmp_path):
    path = tmp_path / "scene.svg"
    path.write_text(svg([e for e, _ in ELEMENTS]))
    with pytest.raises(Reject, match="rendering too slow"):
        DrawProgressively(VectorConfig(max_seconds=1e-6))(Work(source=drawing_source(path)))


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        _Recorder.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"<svg xmlns='http://www.w3.org/2000/svg'/>")

    def log_message(self, *args: object) -> None:
        pass


LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "lol">'
    + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8))
    + ']><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><text>&i;</text></svg>'
)


def test_bad_items_are_reported_one_by_one_and_their_neighbours_are_built(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    folder = tmp_path / "icons"
    (folder / "nested").mkdir(parents=True)
    good = [e for e, _ in ELEMENTS]
    files = {
        "good.svg": svg(good),
        "nested/good_too.svg": svg(good[::-1]),
        "malformed.svg": HEAD + "<g><rect width='5' height='5'></svg>",
        "file_ref.svg": svg(good[:4] + ['<image href="file:///etc/hostname" width="10" height="10"/>']),
        "url_ref.svg": svg(good[:4] + [f'<rect width="9" height="9" fill="url({url}/paint.svg#g)"/>']),
        "css_import.svg": svg(good[:4] + [f'<style>@import "{url}/style.css";</style>']),
        "laughs.svg": LAUGHS,
        "external_entity.svg": f'<!DOCTYPE svg [<!ENTITY x SYSTEM "{url}/x">]>'
        + svg(good[:4] + ["<text>&x;</text>"]),
        "giant.svg": '<svg xmlns="http://www.w3.org/2000/svg" width="1e9" height="1e9">'
        '<rect width="5" height="5"/></svg>',
        "only_defs.svg": svg([]),
        "not_svg.svg": "<html><body>hello</body></html>",
        "readme.txt": "not an svg: never listed",
    }
    for name, text in files.items():
        (folder / name).write_text(text)
    lines = [
        json.dumps({"word": "zigzag", "drawing": [[[0, 10 * i, 10 * i + 5], [0, 10, 0]] for i in range(9)]}),
        "{not json",
        json.dumps({"word": "x", "drawing": [[[0, 1], [0]]]}),
        "",
        json.dumps({"drawing": "nope"}),
    ]
    (tmp_path / "d.ndjson").write_text("\n".join(lines) + "\n")
    manifest = write_manifest(
        tmp_path,
        [{"svg": "icons", "task": "emoji", "license": "CC0-1.0"}, {"strokes": "d.ndjson", "task": "sketch"}],
    )
    try:
        result = build(manifest, tmp_path / "out", FAST, progress=False)
    finally:
        server.shutdown()
    rows = {r["uri"]: r for r in result.report["sources"]}
    assert len(rows) == 11 + 4  # every SVG file (not readme.txt) and every non-blank line is an item
    assert {u for u, r in rows.items() if r["status"] == "ok"} == {
        "icons/good.svg",
        "icons/nested/good_too.svg",
        "d.ndjson#L1",
    }
    expect = {
        "malformed.svg": "malformed or unsafe XML: mismatched tag",
        "file_ref.svg": "external reference: <image href='file:///etc/hostname'>",
        "url_ref.svg": f"external reference: url({url}/paint.svg#g)",
        "css_import.svg": "external reference: CSS @import",
        "laughs.svg": "malformed or unsafe XML: entity 'b' refers to other entities (entity expansion attack)",
        "external_entity.svg": "malformed or unsafe XML: external entity 'x' declared",
        "giant.svg": "giant or empty size: width='1e9'",
        "only_defs.svg": "no drawable elements",
        "not_svg.svg": "not an SVG: the root element is <html>",
    }
    for name, reason in expect.items():
        row = rows[f"icons/{name}"]
        assert row["status"] == "rejected" and row["reason"].startswith(reason), row
    assert rows["d.ndjson#L2"]["reason"].startswith("broken ndjson line")
    assert rows["d.ndjson#L3"]["reason"] == "broken drawing: stroke 0 has lists of different or zero length"
    assert rows["d.ndjson#L5"]["reason"].startswith("broken drawing: `drawing` must be a non-empty list")
    assert _Recorder.hits == []  # nothing was ever fetched
    assert result.summary["new_samples"] == 3 and result.summary["failed"] == 0


def _tgz(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def test_archives_keep_what_precedes_a_break_and_take_the_package_license(tmp_path):
    good = svg([e for e, _ in ELEMENTS]).encode()
    noise = np.random.default_rng(0).bytes(300_000)  # incompressible: the break lands after the good members
    pkg = json.dumps({"name": "@demo/icons", "version": "1.2.0", "license": "MIT", "author": {"name": "Ann"}})
    _tgz(
        tmp_path / "pkg.tgz",
        {
            "package/package.json": pkg.encode(),
            "package/1f600.svg": good,
            "package/a-b_c.svg": good.replace(b"#e33", b"#3e3"),
            "package/zz.bin": noise,
            "package/zz.svg": good,
        },
    )
    data = (tmp_path / "pkg.tgz").read_bytes()
    (tmp_path / "cut.tgz").write_bytes(data[: len(data) - 150_000])
    with zipfile.ZipFile(tmp_path / "icons.zip", "w") as zf:
        zf.writestr("svg/home.svg", good)
        zf.writestr("svg/star.svg", good)
    manifest = write_manifest(
        tmp_path,
        [
            {"svg": "pkg.tgz", "task": "emoji"},
            {"svg": "cut.tgz", "task": "emoji", "license": "CC-BY-4.0", "attribution": "Demo Co."},
            {"svg": "icons.zip", "task": "icon", "members": "h*.svg", "subject": "a house"},
        ],
    )
    items = load_manifest(manifest, TAXONOMY)
    by_uri = {s.uri: s for s in items}
    assert sorted(by_uri) == [
        "cut.tgz#(rest of archive)",
        "cut.tgz#package/1f600.svg",
        "cut.tgz#package/a-b_c.svg",
        "icons.zip#svg/home.svg",
        "pkg.tgz#package/1f600.svg",
        "pkg.tgz#package/a-b_c.svg",
        "pkg.tgz#package/zz.svg",
    ]
    first = by_uri["pkg.tgz#package/1f600.svg"]
    assert (first.subject, first.license, first.attribution) == (
        "grinning face",
        "MIT",
        "@demo/icons@1.2.0, Ann",
    )
    assert by_uri["pkg.tgz#package/a-b_c.svg"].subject == "a b c"
    assert (by_uri["cut.tgz#package/1f600.svg"].license, by_uri["cut.tgz#package/1f600.svg"].attribution) == (
        "CC-BY-4.0",
        "Demo Co.",
    )  # the manifest's word wins over the package's
    assert by_uri["icons.zip#svg/home.svg"].subject == "a house"
    rest = by_uri["cut.tgz#(rest of archive)"]
    with pytest.raises(Reject, match=r"unreadable archive after 2 SVG members"):
        DrawProgressively(VectorConfig())(Work(source=rest))
    res = run_source(first, "b" * 64, build_stages(BuildConfig(), kind="svg"), BuildConfig())
    assert res.status == "ok" and res.samples[0].meta["source"]["license"] == "MIT"
    assert res.samples[0].caption.endswith("emoji design process, grinning face")
    bad = write_manifest(tmp_path, [{"svg": "icons.zip", "task": "icon", "members": "nothing*.svg"}])
    with pytest.raises(ManifestError, match=r"sources\[0\].svg: 'icons.zip' holds no SVG members matching"):
        load_manifest(bad, TAXONOMY)


def _star(n: int, color: str) -> str:
    return svg(
        [f'<circle cx="{10 + 9 * i}" cy="{20 + 7 * i}" r="{4 + i}" fill="{color}"/>' for i in range(n)],
        defs="",
    )


def test_refresh_renders_only_new_and_changed_items(tmp_path):
    folder = tmp_path / "emoji"
    folder.mkdir()
    for i, color in enumerate(["#f00", "#0f0", "#00f", "#fa0"]):
        (folder / f"e{i}.svg").write_text(_star(6, color))
    manifest = write_manifest(tmp_path, [{"svg": "emoji", "task": "emoji"}])
    out = tmp_path / "out"
    first = build(manifest, out, FAST, progress=False).summary
    assert (first["processed"], first["ok"]) == (4, 4)
    (folder / "e1.svg").write_text(_star(7, "#0f0"))  # changed
    (folder / "e4.svg").write_text(_star(5, "#808"))  # new
    second = build(manifest, out, FAST, progress=False)
    assert (second.summary["processed"], second.summary["skipped"], second.summary["ok"]) == (2, 3, 2)
    assert sorted(r["uri"] for r in second.report["sources"]) == ["emoji/e1.svg", "emoji/e4.svg"]
    assert second.summary["total_samples"] == 5  # the changed item's new sample supersedes its old one


def test_refresh_of_an_archive_and_an_ndjson_file_tracks_each_item(tmp_path):
    members = {
        f"package/e{i}.svg": _star(6, color).encode() for i, color in enumerate(["#f00", "#0f0", "#00f"])
    }
    _tgz(tmp_path / "pack.tgz", members)
    line = json.dumps(
        {"word": "zigzag", "drawing": [[[0, 10 * i, 10 * i + 5], [0, 10, 0]] for i in range(9)]}
    )
    (tmp_path / "d.ndjson").write_text(line + "\n" + line.replace("zigzag", "zag") + "\n")
    manifest = write_manifest(
        tmp_path, [{"svg": "pack.tgz", "task": "emoji"}, {"strokes": "d.ndjson", "task": "sketch"}]
    )
    out = tmp_path / "out"
    first = build(manifest, out, FAST, progress=False)
    assert (first.summary["processed"], first.summary["ok"]) == (5, 5)
    again = build(manifest, out, FAST, progress=False).summary  # nothing changed: every item is known
    assert (again["processed"], again["skipped"]) == (0, 5)
    _tgz(
        tmp_path / "pack.tgz",
        {**members, "package/e1.svg": _star(7, "#0f0").encode(), "package/e3.svg": _star(5, "#808").encode()},
    )
    (tmp_path / "d.ndjson").write_text(line + "\n" + line.replace("zigzag", "zig") + "\n")
    third = build(manifest, out, FAST, progress=False)
    assert sorted(r["uri"] for r in third.report["sources"]) == [
        "d.ndjson#L2",
        "pack.tgz#package/e1.svg",
        "pack.tgz#package/e3.svg",
    ]
    assert (third.summary["processed"], third.summary["skipped"]) == (3, 3)
    live = []
    for shard in json.loads((out / "dataset.json").read_text())["shards"]:
        with tarfile.open(out / "shards" / shard["name"]) as t:
            live += [
                json.loads(t.extractfile(m).read())["source"]["uri"] for m in t if m.name.endswith(".json")
            ]
    assert sorted(live) == [
        "d.ndjson#L1",
        "d.ndjson#L2",
        "pack.tgz#package/e0.svg",
        "pack.tgz#package/e1.svg",
        "pack.tgz#package/e2.svg",
        "pack.tgz#package/e3.svg",
    ]  # changed items superseded


def test_strokes_are_fitted_centred_drawn_by_time_and_named_by_their_word(tmp_path):
    rng = np.random.default_rng(1)
    strokes, t = [], 0
    for i in range(5):  # five strokes far off-centre, in raw coordinates, with times (ms)
        xs = [int(x) for x in 1000 + 40 * i + rng.integers(0, 30, 12)]
        ys = [int(y) for y in 500 + np.linspace(0, 300, 12)]
        strokes.append([xs, ys, list(range(t, t + 12 * 50, 50))])
        t += 12 * 50 + 400
    timed = json.dumps({"word": "comb", "drawing": strokes})
    plain = json.dumps({"word": "comb", "drawing": [s[:2] for s in strokes]})
    (tmp_path / "d.ndjson").write_text(timed + "\n" + plain + "\n")
    manifest = write_manifest(tmp_path, [{"strokes": "d.ndjson", "task": "sketch"}])
    items = load_manifest(manifest, TAXONOMY)
    assert [s.uri for s in items] == ["d.ndjson#L1", "d.ndjson#L2"]
    cfg = BuildConfig()
    by_time = run_source(items[0], "c" * 64, build_stages(cfg, kind="strokes"), cfg)
    assert by_time.status == "ok", by_time.reason  # 5 strokes cut by time give the 9 steps
    frames = by_time.samples[0].meta["frames"]
    times = [f["time"] for f in frames]
    assert times == sorted(times) and times[-1] == pytest.approx((t - 400 - 50) / 1000)
    assert by_time.samples[0].caption.endswith("sketching process, comb")
    assert by_time.samples[0].meta["source"]["duration"] == pytest.approx(times[-1])
    plain_res = run_source(items[1], "d" * 64, build_stages(cfg, kind="strokes"), cfg)
    assert plain_res.status == "ok", plain_res.reason  # 5 untimed strokes: drawn along their length
    assert any("splitting strokes: 5 stroked elements" in n for n in plain_res.notes), plain_res.notes
    layout = TAXONOMY["sketch"].layout
    last = np.asarray(split(Image.open(io.BytesIO(by_time.samples[0].jpg)), layout)[-1].convert("L"))
    ys, xs = np.nonzero(last < 128)
    side = layout.content
    ink = max(xs.max() - xs.min(), ys.max() - ys.min())
    width = cfg.vector.stroke_width * side
    assert ink == pytest.approx((1 - 2 * cfg.vector.stroke_margin) * side + width, abs=4)  # fitted
    assert (xs.min() + xs.max()) / 2 == pytest.approx(side / 2, abs=3)  # centred
    assert (ys.min() + ys.max()) / 2 == pytest.approx(side / 2, abs=3)
    row = last[int(np.median(ys))]
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, row < 128, 0])))[::2]
    assert np.median(runs) == pytest.approx(width, abs=2)  # line width proportional to the cell


def test_drawings_write_the_one_sample_schema_and_load_with_datasets(tmp_path):
    from datasets import load_dataset

    steps = tmp_path / "steps"
    steps.mkdir()
    for i in range(4):
        img = np.full((64, 64, 3), 255, np.uint8)
        img[: 16 * (i + 1)] = 30
        Image.fromarray(img).save(steps / f"s{i}.png")
    (tmp_path / "scene.svg").write_text(svg([e for e, _ in ELEMENTS]))
    sun = [[[50, 60, 70], [50, 40, 50], [0, 40, 80]]] + [
        [[10 * i, 10 * i + 5], [90, 95], [200 + 50 * i, 230 + 50 * i]] for i in range(8)
    ]
    (tmp_path / "d.ndjson").write_text(json.dumps({"word": "sun", "drawing": sun}) + "\n")
    manifest = write_manifest(
        tmp_path,
        [
            {"dir": "steps", "task": "emoji"},
            {"svg": "scene.svg", "task": "emoji"},
            {"strokes": "d.ndjson", "task": "sketch"},
        ],
    )
    build(manifest, tmp_path / "out", FAST, progress=False)
    metas = {}
    for tar in sorted((tmp_path / "out" / "shards").glob("*.tar")):
        with tarfile.open(tar) as t:
            metas.update(
                {m.name[:-5]: json.loads(t.extractfile(m).read()) for m in t if m.name.endswith(".json")}
            )
    assert sorted(m["source"]["kind"] for m in metas.values()) == ["images", "strokes", "svg"]
    for key, meta in metas.items():
        assert conform(meta) == meta, key
    assert len({json.dumps(_key_tree(m), sort_keys=True) for m in metas.values()}) == 1
    files = {"train": sorted(str(p) for p in (tmp_path / "out" / "shards").glob("*.tar"))}
    ds = load_dataset("webdataset", data_files=files, split="train", features=features())
    assert sorted(ds["__key__"]) == sorted(metas)
    for row in ds:
        assert row["json"] == metas[row["__key__"]]  # nothing lost or retyped on the way through Arrow


def _key_tree(value: object) -> object:
    if isinstance(value, dict):
        return {k: _key_tree(v) for k, v in value.items()}
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [_key_tree(value[0])]
    return None


def test_subjects_from_file_names():
    assert subject_from_name("1f600") == "grinning face"
    assert subject_from_name("2764") == "red heart"  # the file name dropped the variation selector
    assert subject_from_name("1f468-200d-1f469-200d-1f467") == "family man woman girl"
    assert subject_from_name("cafe") == "cafe"  # hex digits, but a word
    assert subject_from_name("arrow-left") == "arrow left"


def test_manifest_rules_for_drawing_entries(tmp_path):
    (tmp_path / "a.svg").write_text(_star(5, "#f00"))
    cases = [
        ({"svg": "a.svg", "task": "emoji", "id": "one"}, r"sources\[0\].*an id names one source"),
        ({"path": "a.mp4", "task": "emoji", "members": "*.svg"}, r"members applies to svg entries only"),
        ({"svg": "a.svg", "strokes": "d.ndjson", "task": "emoji"}, r"give exactly one of .*svg, strokes"),
        ({"svg": "icons/*.svg", "task": "emoji"}, r"sources\[0\]\.svg: 'icons/\*\.svg' matches no SVG files"),
        (
            {"strokes": "missing.ndjson", "task": "sketch"},
            r"sources\[0\]\.strokes: 'missing.ndjson' is not a file",
        ),
    ]
    for entry, message in cases:
        with pytest.raises(ManifestError, match=message):
            load_manifest(write_manifest(tmp_path, [entry]), TAXONOMY)
    gone = load_manifest(write_manifest(tmp_path, [{"svg": "gone.svg", "task": "emoji"}]), TAXONOMY)[0]
    with pytest.raises(
        Reject, match="unreadable item: .*No such file"
    ):  # like a missing video: that item only
        DrawProgressively(VectorConfig())(Work(source=gone))


def test_demo_drawings_all_become_sequences(tmp_path):
    from pipeline.demo.vector import write_vector_demo

    manifest = write_manifest(tmp_path, write_vector_demo(tmp_path / "drawings"))
    result = build(manifest, tmp_path / "out", FAST, progress=False)
    assert [(r["uri"], r["status"]) for r in result.report["sources"]] == [
        ("drawings/smiley.svg", "ok"),
        ("drawings/cat_face.svg", "ok"),
        ("drawings/house.svg", "ok"),
        ("drawings/sketches.ndjson#L1", "ok"),
        ("drawings/sketches.ndjson#L2", "ok"),
    ]
    assert result.report["per_task"] == {"emoji": 2, "icon": 1, "sketch": 2}
