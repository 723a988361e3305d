"""How SVGs become steps, on small SVGs written here: partial strokes for drawings with too few parts,
filled shapes traced before they are filled, grounds and annotations that are never steps, outline-first
reveal order, path lengths, and what a package's metadata says (subjects, licenses, members by path)."""

from __future__ import annotations

import copy
import io
import json
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import resvg_py
from PIL import Image

from pipeline.config import BuildConfig, VectorConfig
from pipeline.corpus.card import share_alike
from pipeline.drawings.catalog import cc_id, python_metadata, read_catalog
from pipeline.drawings.collect import matcher
from pipeline.drawings.emoji_names import subject_from_name
from pipeline.drawings.paths import subpaths
from pipeline.drawings.svg import DEFS, G, SvgDrawing
from pipeline.intake.manifest import ManifestError, load_manifest
from pipeline.layout import split
from pipeline.run.worker import run_source
from pipeline.stages.chain import build_stages
from pipeline.taxonomy import Taxonomy
from pipeline.work import Reject, Source
from tests.conftest import write_manifest

TAXONOMY = Taxonomy.load()
CONFIG = BuildConfig.model_validate({"clip": {"enabled": False}})
HEAD = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" '
ICON = (  # a tabler-style line icon: three stroked paths (an arc, a compound path, a line)
    HEAD + 'fill="none" stroke="#000" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">'
    '<path stroke="none" d="M0 0h24v24H0z" fill="none"/>'
    '<path d="M12 3a9 9 0 1 0 0 18a9 9 0 1 0 0 -18"/>'
    '<path d="M9 10l0 .01m6 -.01l0 .01"/>'
    '<path d="M8 15c2 2 6 2 8 0"/></svg>'
)


def build_one(svg: str, task: str, tmp_path, **source: object):
    path = tmp_path / "item.svg"
    path.write_text(svg)
    src = Source(uri=path.name, path=str(path), task=TAXONOMY[task], kind="svg", **source)  # type: ignore[arg-type]
    result = run_source(src, "0" * 64, build_stages(CONFIG, kind="svg"), CONFIG)
    assert result.status == "ok", result.reason
    layout = TAXONOMY[task].layout
    grid = Image.open(io.BytesIO(result.samples[0].jpg)).convert("RGB")
    return result, [np.asarray(c, int) for c in split(grid, layout)]


def whole(svg: str, side: int) -> np.ndarray:
    png = resvg_py.svg_to_bytes(svg_string=svg, width=side, height=side, background="#ffffff")
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), int)


def differs(a: np.ndarray, b: np.ndarray, tol: int = 40) -> np.ndarray:
    return np.abs(a - b).max(axis=2) > tol


def test_a_three_path_icon_gives_nine_steps_by_partial_strokes(tmp_path):
    result, steps = build_one(ICON, "icon", tmp_path)
    assert len(steps) == 9
    assert any("splitting strokes" in n for n in result.notes), result.notes
    ink = [int((s.min(axis=2) < 128).sum()) for s in steps]
    assert all(b > a for a, b in zip(ink, ink[1:])), ink  # every step adds visible line
    assert all(differs(a, b).mean() > 0.001 for a, b in zip(steps, steps[1:]))  # 9 distinct steps
    side = TAXONOMY["icon"].layout.content
    assert differs(steps[-1], whole(ICON, side)).mean() <= 0.01  # the last step is the whole icon
    frames = json.loads(json.dumps(result.samples[0].meta))["frames"]
    assert [f["source_frame"] for f in frames] == sorted({f["source_frame"] for f in frames})


def test_filled_shapes_stay_whole_and_too_few_of_them_are_rejected():
    svg = HEAD + '><rect x="2" y="2" width="8" height="8"/><circle cx="16" cy="16" r="5" fill="#c00"/></svg>'
    drawing = SvgDrawing(svg.encode(), VectorConfig())
    assert [drawing.lengths(k) for k in range(len(drawing.parts))] == [None, None]  # nothing to split


def test_a_full_canvas_background_is_the_ground_of_every_step(tmp_path):
    svg = (
        HEAD
        + '><rect width="24" height="24" fill="#2a6fdb"/>'
        + "".join(
            f'<circle cx="{4 + 4 * i}" cy="{6 + 3 * (i % 2)}" r="1.8" fill="#ffd400"/>' for i in range(5)
        )
        + '<path d="M3 18h18" stroke="#fff" stroke-width="2"/></svg>'
    )
    result, steps = build_one(svg, "emoji", tmp_path)
    assert any("ground" in n for n in result.notes)
    blue = np.array([0x2A, 0x6F, 0xDB])
    for s in steps:
        corners = [s[2, 2], s[2, -3], s[-3, 2], s[-3, -3]]
        assert all(np.abs(c - blue).max() < 40 for c in corners)  # the ground is in every step
    assert (np.abs(steps[0] - blue).max(axis=2) > 60).mean() > 0.001  # and step 1 draws on it


def test_a_skipped_group_never_appears_and_kanjivg_stroke_numbers_are_left_out(tmp_path):
    strokes = "".join(f'<path d="M{3 + 4 * i} 4v16"/>' for i in range(5))
    svg = (
        HEAD + 'xmlns:kvg="http://kanjivg.tagaini.net">'
        f'<g id="kvg:StrokePaths_x" style="fill:none;stroke:#000;stroke-width:1.5">{strokes}</g>'
        '<g id="notes" class="note"><rect x="0" y="20" width="24" height="4" fill="#f00"/></g>'
        '<g id="kvg:StrokeNumbers_x" style="font-size:4;fill:#808080"><rect x="0" y="0" width="24" height="3"/>'
        '<text transform="matrix(1 0 0 1 2 3)">1</text></g></svg>'
    )
    _, steps = build_one(svg, "line-draw", tmp_path, svg_skip=("#notes",))
    for s in steps:
        red = (s[..., 0] > 180) & (s[..., 1] < 90) & (s[..., 2] < 90)
        assert red.sum() == 0  # the skipped group
        assert s[: s.shape[0] // 8].min() > 200  # the stroke-number band along the top stays white


def test_outline_first_reveals_line_work_before_colour(tmp_path):
    svg = (
        HEAD + '><g id="color"><circle cx="12" cy="12" r="9" fill="#fcea2b"/>'
        '<rect x="7" y="14" width="10" height="3" fill="#ea5a47"/></g>'
        '<g id="line"><circle cx="12" cy="12" r="9" fill="none" stroke="#000" stroke-width="1.5"/>'
        '<circle cx="9" cy="10" r="1"/><circle cx="15" cy="10" r="1"/>'
        '<rect x="7" y="14" width="10" height="3" fill="none" stroke="#000"/></g></svg>'
    )
    _, steps = build_one(svg, "emoji", tmp_path, svg_order="outline-first")
    first = steps[0]
    colour = (first.max(axis=2) - first.min(axis=2)) > 60
    assert colour.sum() == 0 and (first.max(axis=2) < 80).sum() > 100  # line pixels, no fill colour
    assert ((steps[-1].max(axis=2) - steps[-1].min(axis=2)) > 60).sum() > 1000  # colour comes later
    _, painted = build_one(svg, "emoji", tmp_path)  # paint order: the yellow face comes first
    assert ((painted[0].max(axis=2) - painted[0].min(axis=2)) > 60).sum() > 1000


def test_construction_guides_are_rejected_with_the_reason():
    svg = (
        HEAD
        + '><g id="grid"><path d="M0 0h24v24H0z" fill="#b3b3b3"/></g><circle cx="12" cy="12" r="5"/></svg>'
    )
    with pytest.raises(Reject, match="construction guides.*grid"):
        SvgDrawing(svg.encode(), VectorConfig())
    skipped = SvgDrawing(svg.encode(), VectorConfig(), skip=("#grid",))
    assert len(skipped.units) == 1


def test_hidden_elements_are_not_units():
    svg = (
        HEAD + '><circle cx="5" cy="5" r="3" display="none"/><g style="display:none"><rect width="9" '
        'height="9"/></g><rect x="1" y="1" width="2" height="2" visibility="hidden"/>'
        '<circle cx="12" cy="12" r="5"/></svg>'
    )
    assert len(SvgDrawing(svg.encode(), VectorConfig()).units) == 1


def test_path_lengths_follow_relative_commands_arcs_and_subpaths():
    (circle,) = subpaths("M12 3a9 9 0 1 0 0 18a9 9 0 1 0 0 -18")
    assert circle.length == pytest.approx(2 * math.pi * 9, rel=0.01)
    first, second = subpaths("M5 5l10 0 0 10z m20 0 l5 5")
    assert first.length == pytest.approx(20 + math.sqrt(200)) and second.d() == "M25 5L30 10"
    (smooth,) = subpaths("M0 0c0 10 10 10 10 0s10 -10 10 0")
    assert smooth.d() == "M0 0C0 10 10 10 10 0C10 -10 20 -10 20 0"
    (flags,) = subpaths("M1 1a1 1 0 011 1")  # arc flags written without separators
    assert flags.length == pytest.approx(math.pi / 2, rel=0.01)


def test_a_sketch_with_two_strokes_still_gives_nine_steps(tmp_path):
    line = json.dumps({"word": "hill", "drawing": [[[0, 100, 200], [200, 40, 200]], [[20, 180], [220, 220]]]})
    path = tmp_path / "hill.ndjson"
    path.write_text(line + "\n")
    src = Source(
        uri="hill.ndjson#L1", path=str(path), task=TAXONOMY["sketch"], kind="strokes", span=(0, len(line))
    )
    result = run_source(src, "0" * 64, build_stages(CONFIG, kind="strokes"), CONFIG)
    assert result.status == "ok", result.reason
    assert any("splitting strokes" in n for n in result.notes)


def test_subjects_licenses_and_members_by_path():
    assert subject_from_name("06f22") == "the kanji 漢"
    assert subject_from_name("03042") == "あ (hiragana letter a)"
    assert subject_from_name("04e14-Kaisho") == "the kanji 且, Kaisho form"
    assert subject_from_name("00021") == "! (exclamation mark)"
    assert subject_from_name("cafe") == "cafe" and subject_from_name("1f600") == "grinning face"
    kanjivg = (
        b"Metadata-Version: 2.4\nName: kanjivg\nVersion: 20260714\nAuthor: ospalh\n"
        b"Classifier: License :: OSI Approved\n\nKanjiVG is copyright Ulrich Apel and released under the "
        b"Creative Commons\nAttribution-Share Alike 3.0 licence:\n"
    )
    assert python_metadata(kanjivg) == ("CC-BY-SA-3.0", "kanjivg@20260714, ospalh")
    assert cc_id("Creative Commons Attribution 4.0 International") == "CC-BY-4.0"
    catalog = read_catalog(
        {
            "package.json": json.dumps(
                {"name": "openmoji", "version": "17.0.0", "license": "CC-BY-SA-4.0"}
            ).encode(),
            "openmoji.json": json.dumps([{"hexcode": "E0C0", "annotation": "openmoji logo"}]).encode(),
            "icons.json": json.dumps(
                {"home": {"name": "home", "tags": ["home", "house", "building"]}}
            ).encode(),
        }
    )
    assert (catalog.license, catalog.attribution) == ("CC-BY-SA-4.0", "openmoji@17.0.0")
    assert catalog.subject("e0c0") == "openmoji logo" and catalog.subject("home") == "home (house, building)"
    chosen = matcher("color/svg/1F60*.svg")
    assert chosen("package/color/svg/1F600.svg")
    assert not chosen("package/src/smileys-emotion/face-smiling/1F600.svg")
    assert not chosen("package/black/svg/1F600.svg")
    assert matcher("1F60*.svg")("package/src/x/1F600.svg")  # a bare name matches in any folder, as before


def test_share_alike_licenses_are_carried_into_the_card():
    lines = share_alike(
        [
            {"license": "MIT", "attribution": "@tabler/icons@3.54.0", "sources": 3, "samples": 3},
            {"license": "CC-BY-SA-3.0", "attribution": "kanjivg@20260714", "sources": 5, "samples": 4},
        ]
    )
    text = "\n".join(lines)
    assert "CC-BY-SA-3.0: kanjivg@20260714" in text and "MIT" not in text
    assert share_alike([{"license": "MIT", "attribution": None, "sources": 1, "samples": 1}]) == []


def test_manifest_options_are_checked_by_entry_and_reach_every_item(tmp_path):
    (tmp_path / "a.svg").write_text(ICON)
    (tmp_path / "d.ndjson").write_text('{"drawing": [[[0, 1], [0, 1]]]}\n')
    good = {"svg": "a.svg", "task": "emoji", "order": "outline-first", "skip": ["#grid", ".note", "text"]}
    (item,) = load_manifest(write_manifest(tmp_path, [good]), TAXONOMY)
    assert item.svg_order == "outline-first" and item.svg_skip == ("#grid", ".note", "text")
    for bad, field, words in (
        ({"strokes": "d.ndjson", "task": "sketch", "order": "outline-first"}, "", "svg entries only"),
        ({"svg": "a.svg", "task": "emoji", "order": "ink-first"}, r"\.order", "outline-first"),
        ({"svg": "a.svg", "task": "emoji", "skip": ["#a b"]}, "", "skip selectors"),
    ):  # an entry-wide problem is named by the entry, a bad value by its key path
        with pytest.raises(ManifestError, match=rf"sources\[0\]{field}: .*{words}"):
            load_manifest(write_manifest(tmp_path, [bad]), TAXONOMY)


def serialized(drawing: SvgDrawing, shown: int, side: int) -> str:
    """The reference for SvgDrawing.document: a copy of the tree set to the step and serialized whole by
    ElementTree (what document() wrote on every render before it kept the serialized text)."""
    state = {u.part: u for u in drawing.units[:shown]}
    root = copy.deepcopy(drawing.root)
    twin = dict(zip(drawing.root.iter(), root.iter()))
    for k, p in enumerate(drawing.parts):
        u = state.get(k)
        twin[p.wrapper].tag = G if u is not None else DEFS
        compound = drawing._compound.get(p.element)
        if compound is not None:
            twin[p.element].set("d", compound.data(u.groups) if u is not None else compound.d)
        outlined = p.fill_holder is not None
        if outlined:
            twin[p.fill_holder].tag = G if u is not None and not u.outline else DEFS
        for j, (holder, length) in enumerate(p.pieces or []):
            target = twin[p.element] if holder is p.wrapper else twin[holder[0]]
            if holder is not p.wrapper:
                twin[holder].tag = G if u is not None and j <= u.sub and u.outline == outlined else DEFS
            target.attrib.pop("stroke-dasharray", None)
            if u is not None and j == u.sub and u.length is not None:
                target.set("stroke-dasharray", f"{u.length:.4f} {length + 1:.4f}")
    root.set("width", str(side))
    root.set("height", str(side))
    return ET.tostring(root, encoding="unicode")


def test_each_document_is_the_tree_serialized_in_that_state():
    svg = (
        HEAD + 'fill="none" stroke="#000">'
        '<path d="M2 2h4v4h-4z&#10;m6 0h4v4h-4z m6 0h4v4h-4z" fill="#c00" data-note="a &amp; &quot;b&quot;"/>'
        '<circle id="c" cx="12" cy="16" r="3"/><use href="#c" x="6"/>'
        '<path d="M2 20h20m-20 2h20"/><text x="1" y="23">&lt;ok&gt;</text></svg>'
    )
    drawing = SvgDrawing(svg.encode(), VectorConfig())
    for side in (64, 300):
        for shown in range(len(drawing.units) + 1):
            assert drawing.document(shown, side) == serialized(drawing, shown, side)
    drawing.split({1: 3, 3: 4})  # the circle and the two-line path drawn along their length
    for shown in range(len(drawing.units) + 1):
        assert drawing.document(shown, 96) == serialized(drawing, shown, 96)
    drawing = SvgDrawing(svg.encode(), VectorConfig())
    drawing.trace({1: 2})  # the circle outlined in two pieces, then filled
    assert [u.outline for u in drawing.units if u.part == 1] == [True, True, False]
    for shown in range(len(drawing.units) + 1):
        assert drawing.document(shown, 96) == serialized(drawing, shown, 96)


def additions(svg: str) -> list[float]:
    """What each unit adds to the picture: the share of pixels that change from the previous step."""
    drawing = SvgDrawing(svg.encode(), VectorConfig())
    shots = [whole(drawing.document(k, 96), 96) for k in range(len(drawing.units) + 1)]
    return [float(differs(a, b).mean()) for a, b in zip(shots, shots[1:])]


def test_a_filled_path_of_three_separate_shapes_gives_three_additions():
    svg = HEAD + '><path fill="#c00" d="M2 2h6v6h-6z m8 0h6v6h-6z M18 12a3 3 0 1 0 0.01 0z"/></svg>'
    added = additions(svg)
    assert len(added) == 3 and all(a > 0.02 for a in added)
    assert (
        differs(whole(SvgDrawing(svg.encode(), VectorConfig()).document(3, 96), 96), whole(svg, 96)).sum()
        == 0
    )


def test_a_filled_path_with_a_hole_stays_whole():
    ring = "M2 2h20v20h-20z M7 7v10h10v-10z"  # the inner square wound the other way: a hole
    assert len(additions(HEAD + f'><path d="{ring}"/></svg>')) == 1
    nested = "M2 2h20v20h-20z M7 7h10v10h-10z"  # wound the same way: under evenodd still a hole
    assert len(additions(HEAD + f'><path fill-rule="evenodd" d="{nested}"/></svg>')) == 1
    assert len(additions(HEAD + f'><g fill-rule="evenodd"><path d="{nested}"/></g></svg>')) == 1  # inherited
    # a letter with its counter and a dot apart, in either order: the letter comes whole, with its counter
    for d in (f"{ring} M1 23h1v1h-1z", "M2 2h20v20h-20z M1 23h1v1h-1z M7 7v10h10v-10z"):
        svg = HEAD + f'><path d="{d}"/></svg>'
        drawing = SvgDrawing(svg.encode(), VectorConfig())
        steps = [whole(drawing.document(k, 96), 96) for k in range(3)]
        assert len(drawing.units) == 2 and all(differs(a, b).mean() > 0 for a, b in zip(steps, steps[1:]))
        assert steps[1][48, 48].min() > 200  # the letter first, its counter never painted, then erased
        assert differs(steps[2], whole(svg, 96)).sum() == 0
    # a subpath that is a point inside a shape (a box of no size) takes no paint from it: a unit adding nothing
    added = additions(HEAD + '><path d="M2 2h20v20h-20z M12 12L12 12 M1 23h1v1h-1z"/></svg>')
    assert len(added) == 3 and added[0] > 0.5 and added[1] == 0 and added[2] > 0
    # line work is never a fill: a stroked compound path is cut at every subpath
    assert len(additions(HEAD + f'><path d="{nested}" fill="none" stroke="#000"/></svg>')) == 2


def test_filled_shapes_too_few_for_n_steps_are_traced_then_filled(tmp_path):
    svg = HEAD + '><circle cx="12" cy="12" r="10" fill="#c00"/></svg>'  # one shape, as a Twemoji heart
    result, steps = build_one(svg, "emoji", tmp_path)
    assert any("tracing shapes: 1 filled shapes" in n for n in result.notes), result.notes
    red = [(np.abs(s - [204, 0, 0]).max(axis=2) < 60) for s in steps]
    assert all(int(b.sum()) > int(a.sum()) for a, b in zip(red, red[1:]))  # every step adds visible red
    assert all((r & ~red[-1]).mean() < 0.001 for r in red)  # and only where the filled circle is red
    middle = TAXONOMY["emoji"].layout.content // 2
    assert steps[2][middle, middle].min() > 200  # outlined, not yet filled
    assert differs(steps[-1], whole(svg, TAXONOMY["emoji"].layout.content)).mean() <= 0.01


def test_a_traced_line_stays_inside_its_shape_with_a_transform_and_a_hole():
    ring = "M2 2h10v10h-10z M5 5h4v4h-4z"  # under evenodd, the inner square is a hole
    svg = (
        HEAD
        + f'><path fill="#06c" fill-rule="evenodd" transform="translate(2 2) scale(1.5)" d="{ring}"/></svg>'
    )
    drawing = SvgDrawing(svg.encode(), VectorConfig())
    assert drawing.trace({0: 3}) == 1 and len(drawing.units) == 4
    final = whole(drawing.document(4, 96), 96)
    assert differs(final, whole(svg, 96)).sum() == 0  # the last unit is the shape as it was
    inside = final.min(axis=2) < 128
    for k in range(1, 4):
        drawn = whole(drawing.document(k, 96), 96).min(axis=2) < 200
        assert drawn.any() and not (drawn & ~inside).any()  # never outside the shape nor in its hole
    # a gradient fill, a clip path of its own or line work is not traced
    for other in ('fill="url(#g)"', 'clip-path="url(#c)"', 'fill="none" stroke="#000"'):
        drawing = SvgDrawing((HEAD + f'><rect width="9" height="9" {other}/></svg>').encode(), VectorConfig())
        assert drawing.outline_lengths(0) is None
