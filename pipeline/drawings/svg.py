"""An SVG file as a drawing: its drawable elements in paint order, and the document showing the first k.

Paint order is document order: later elements cover earlier ones. The drawable units are the leaves that
paint (shapes, paths, text, ``use`` instances, images, ``switch``) reached through the containers that
render their children (``g``, ``a``, nested ``svg``); everything under ``defs``, ``clipPath``, ``mask``,
``pattern``, ``marker``, ``symbol`` and the like only paints when referenced. Every unit is wrapped in a
plain ``<g>`` once; hiding a unit renames its wrapper to ``<defs>``, so ids, gradients, clip paths and
``use`` targets inside it stay resolvable and nothing else in the document moves. A compound path (one
``d`` holding several subpaths, e.g. both eyes) is drawn subpath by subpath: its unit k shows the path
data up to the end of subpath k (a prefix, so relative coordinates stay right). A filled one is drawn a
group of subpaths at a time, a shape with its holes (:mod:`pipeline.drawings.holes`: the counter of an "O"
comes with its letter); groups that do not make the start of the path are written as absolute subpaths.

Units are revealed in paint order, or line work first (``outline-first``): what shows is a set of units,
and the document keeps its paint order, so a colour fill revealed after its outline still lies under it.
Annotations (``skip`` selectors, hidden elements) never become units. A stroke-only part can be split into
pieces drawn along its length (``stroke-dasharray`` up to a length; a compound path becomes one absolute
path per subpath, since dash patterns restart at every subpath), for drawings with too few parts; so can
a filled shape's outline (a band inside its edge, in its own colour, clipped to the shape) before the
shape is filled, as an artist traces a shape, then colours it in.

The document is serialized once, with slots where steps differ (which wrappers paint, path data, dash
lengths, size), and each step's text is filled in from it: writing the whole tree for every render cost
6-8% of an item's time (tabler, KanjiVG).
"""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace

import numpy as np

from pipeline.config import VectorConfig
from pipeline.drawings.holes import groups
from pipeline.drawings.paths import BadPath, Subpath, shape_length, subpaths
from pipeline.drawings.safe_xml import UnsafeXml, parse
from pipeline.drawings.style import Selector, Style, guide, hidden, label
from pipeline.work import Reject

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
ET.register_namespace("", SVG_NS)
ET.register_namespace("xlink", XLINK_NS)

DRAWABLE = {
    "path",
    "rect",
    "circle",
    "ellipse",
    "line",
    "polyline",
    "polygon",
    "text",
    "use",
    "image",
    "switch",
}
CONTAINERS = {"g", "a", "svg"}
CLIP = f"{{{SVG_NS}}}clipPath"
SPLITTABLE = {"path", "line", "polyline", "polygon", "rect", "circle", "ellipse"}
G, DEFS = f"{{{SVG_NS}}}g", f"{{{SVG_NS}}}defs"
HREFS = ("href", f"{{{XLINK_NS}}}href")
SUBPATH = re.compile(r"[Mm]")
ATTRIBUTE = str.maketrans(  # what ElementTree escapes in an attribute value
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\r": "&#13;", "\n": "&#10;", "\t": "&#09;"}
)
URL = re.compile(r"url\(\s*['\"]?([^'\")]*)")
LENGTH = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*(px|pt|pc|mm|cm|in)?\s*$")
PX_PER = {None: 1.0, "px": 1.0, "pt": 4 / 3, "pc": 16.0, "mm": 96 / 25.4, "cm": 96 / 2.54, "in": 96.0}


def _local(tag: str) -> str | None:
    """The SVG element name of ``tag``, None for elements of other namespaces (editor metadata)."""
    if tag.startswith(f"{{{SVG_NS}}}"):
        return tag[len(SVG_NS) + 2 :]
    return None


def _local_ref(value: str) -> bool:
    return value.startswith("#") or value.startswith("data:")


def _length(value: str | None) -> float | None:
    m = LENGTH.match(value or "")
    return float(m.group(1)) * PX_PER[m.group(2)] if m else None


@dataclass
class Part:
    """An element that paints, wrapped once: its style, and its subpaths when it is drawn part by part."""

    wrapper: ET.Element
    element: ET.Element
    style: Style
    pieces: list[tuple[ET.Element, float]] | None = None  # (wrapper, stroke length) per subpath once split
    fill_holder: ET.Element | None = None  # holds the element itself once its outline is drawn first

    def target(self, holder: ET.Element) -> ET.Element:
        """The element a piece's dash pattern goes on: the part itself, or the subpath copy in ``holder``."""
        return self.element if holder is self.wrapper else holder[0]


@dataclass
class Compound:
    """A path of several subpaths, drawn a group at a time (a shape comes with its holes)."""

    d: str  # the whole path data, as written
    subs: list[Subpath]
    group: list[int]  # per subpath, its group; groups are numbered in the order they come

    def data(self, shown: int) -> str:
        """The path data of the first ``shown`` groups: as written, up to where the next subpath begins,
        when those make the start of the path; else their subpaths, each written in absolute form."""
        if shown > max(self.group):
            return self.d
        chosen = [i for i, g in enumerate(self.group) if g < shown]
        if chosen[-1] == len(chosen) - 1:
            return self.d[: self.subs[len(chosen)].begin]
        return "".join(self.subs[i].d() for i in chosen)


@dataclass
class Unit:
    """One addition: a part shown whole, its first ``groups`` groups of subpaths (a compound path), or
    along its outline up to ``length`` of subpath ``sub`` (partial strokes; ``outline``: the outline of a
    filled shape, not yet filled)."""

    part: int
    groups: int = 0
    sub: int = 0
    length: float | None = None
    outline: bool = False


class SvgDrawing:
    """A parsed, checked SVG. Raises Reject with the reason for input that must not or cannot be drawn.

    ``skip``: selectors of annotations never drawn; ``order``: ``paint`` (document order) or
    ``outline-first`` (line work, then colour).
    """

    def __init__(
        self, data: bytes, cfg: VectorConfig, skip: tuple[str, ...] = (), order: str = "paint"
    ) -> None:
        try:
            root = parse(data)
        except UnsafeXml as e:
            raise Reject(f"malformed or unsafe XML: {e}") from None
        if root.tag == "svg":  # no xmlns: read it as SVG anyway, as browsers do for inline SVG
            for el in root.iter():
                if isinstance(el.tag, str) and not el.tag.startswith("{"):
                    el.tag = f"{{{SVG_NS}}}{el.tag}"
        if _local(root.tag) != "svg":
            raise Reject(f"not an SVG: the root element is <{root.tag}>")
        count = sum(1 for _ in root.iter())
        if count > cfg.max_elements:
            raise Reject(f"too many elements: {count} (at most {cfg.max_elements})")
        _refuse_external(root)
        self.width, self.height = _geometry(root, cfg.max_size)
        self.band = cfg.outline_band * max(self.width, self.height)  # a traced outline's width inside a shape
        self.root = root
        self.parts: list[Part] = []  # in paint order
        self.units: list[Unit] = []  # in the order they are revealed
        self._compound: dict[ET.Element, Compound] = {}  # paths drawn a group of subpaths at a time
        self._parsed: dict[ET.Element, list[Subpath]] = {}
        self._template: tuple[list[str], list[tuple[str, int, int, str]]] | None = None
        self.skipped: list[ET.Element] = []  # annotations left out
        sheet = any(_local(e.tag) == "style" for e in root.iter() if isinstance(e.tag, str))
        self._wrap(root, Style(resolved=not sheet).child(root), Selector(list(skip)))
        if not self.units:
            raise Reject("no drawable elements: nothing in the document paints")
        left_out = {id(e) for s in self.skipped for e in s.iter()}
        self.text = any(
            _local(e.tag) == "text" and id(e) not in left_out for e in root.iter() if isinstance(e.tag, str)
        )
        if order == "outline-first":  # stable: line work in paint order, then the rest in paint order
            self.units.sort(key=lambda u: not self.line_work(u.part))

    def line_work(self, part: int) -> bool:
        p = self.parts[part]
        return p.style.stroke_only or p.style.line_group

    def _wrap(self, parent: ET.Element, style: Style, skip: Selector) -> None:
        for i, child in enumerate(list(parent)):
            name = _local(child.tag) if isinstance(child.tag, str) else None
            if name not in CONTAINERS and name not in DRAWABLE:
                continue
            if skip.matches(child, name):  # an annotation: kept resolvable, never drawn
                holder = ET.Element(DEFS)
                parent.remove(child)
                parent.insert(i, holder)
                holder.append(child)
                self.skipped.append(child)
                continue
            if hidden(child):
                continue
            inner = style.child(child)
            if name in CONTAINERS:
                if guide(child):
                    raise Reject(
                        f"construction guides in the drawing: <{name} {label(child)!r}> (an editor's source "
                        f"copy? build the finished files, or name it in `skip:` to leave it out)"
                    )
                self._wrap(child, inner, skip)
                continue
            if inner.visibility != "visible":
                continue
            wrapper = ET.Element(G)
            parent.remove(child)
            parent.insert(i, wrapper)
            wrapper.append(child)
            self.parts.append(Part(wrapper, child, inner))
            k = len(self.parts) - 1
            compound = self._compound_of(child, inner) if name == "path" else None
            if compound is not None:
                self._compound[child] = compound
                self.units.extend(Unit(k, g + 1) for g in range(max(compound.group) + 1))
            else:
                self.units.append(Unit(k))

    def _compound_of(self, path: ET.Element, style: Style) -> Compound | None:
        """The path's groups of subpaths (for a fill, a shape with its holes; for line work, each subpath);
        None when it is drawn whole: one group, or path data that cannot be read."""
        d = path.get("d", "")
        if len(SUBPATH.findall(d)) < 2:
            return None
        try:
            subs = self._subpaths(path)
        except BadPath:
            return None
        group = groups(subs, style.fill_rule == "evenodd") if style.filled else list(range(len(subs)))
        return Compound(d, subs, group) if max(group, default=0) > 0 else None

    def _subpaths(self, path: ET.Element) -> list[Subpath]:
        """The path's data read once (raises BadPath)."""
        if path not in self._parsed:
            self._parsed[path] = subpaths(path.get("d", ""))
        return self._parsed[path]

    def lengths(self, part: int) -> list[float] | None:
        """Stroke length of each subpath of a stroke-only part; None when it is not drawn along a line."""
        p = self.parts[part]
        name = _local(p.element.tag) or ""
        if not p.style.splittable or name not in SPLITTABLE:
            return None
        return self._lengths(p.element, name)

    def outline_lengths(self, part: int) -> list[float] | None:
        """Outline length of each subpath of a filled shape drawn whole in a plain colour; None when it is not
        traced (line work, a gradient or pattern fill, a style sheet, a path drawn a group at a time, a clip
        path of its own)."""
        p = self.parts[part]
        name = _local(p.element.tag) or ""
        fill = p.style.fill
        if (
            name not in SPLITTABLE - {"line"}
            or not p.style.resolved
            or fill in ("none", "transparent")
            or fill.startswith("url(")
            or p.element in self._compound
            or p.pieces is not None
            or p.element.get("clip-path") is not None
        ):
            return None
        return self._lengths(p.element, name)

    def _lengths(self, element: ET.Element, name: str) -> list[float] | None:
        """Outline length of each subpath of a shape; None when it has none or cannot be read."""
        try:
            found = (
                [s.length for s in self._subpaths(element)]
                if name == "path"
                else [shape_length(element, name)]
            )
        except BadPath:
            return None
        return found if found and sum(found) > 0 else None

    def trace(self, pieces: dict[int, int]) -> int:
        """Draw each filled part in ``pieces`` as its outline in that many even lengths, then filled, in the
        place of its unit; returns how many parts are traced."""
        units: list[Unit] = []
        for u in self.units:
            units.extend(self._outline(u.part, pieces[u.part]) if u.part in pieces else [u])
        self.units = units
        self._template = None  # the tree changed
        return len(pieces)

    def _outline(self, part: int, count: int) -> list[Unit]:
        """The part's element goes into a holder of its own (painted once it is filled), and next to it one
        copy per subpath stroked in the fill's colour, twice the band wide and clipped to the shape (its fill
        rule as the clip rule; in the copy's own user space, so without its transform), so a traced line only
        paints what the filled shape will."""
        p = self.parts[part]
        el, lengths = p.element, self.outline_lengths(part) or [0.0]
        p.wrapper.remove(el)
        p.fill_holder = ET.SubElement(p.wrapper, G)
        p.fill_holder.append(el)
        clip_id = f"trace{uuid.uuid4().hex[:12]}"
        keep = {k: v for k, v in el.attrib.items() if k != "id" and not k.startswith(("fill", "stroke"))}
        style = ";".join(
            d
            for d in (el.get("style") or "").split(";")
            if d.strip() and not d.strip().startswith(("fill", "stroke"))
        )
        keep.pop("style", None)
        if style:
            keep["style"] = style
        clip = ET.SubElement(p.wrapper, CLIP, {"id": clip_id})
        shape = {k: v for k, v in keep.items() if k != "transform"}
        ET.SubElement(clip, el.tag, shape | {"clip-rule": p.style.fill_rule})
        paint = "currentColor" if p.style.fill == "currentcolor" else p.style.fill
        line = keep | {
            "fill": "none",
            "stroke": paint,
            "stroke-width": f"{2 * self.band:.6g}",
            "stroke-linecap": "round",
            "stroke-linejoin": "round",
            "clip-path": f"url(#{clip_id})",
        }
        if el.get("fill-opacity") is not None:
            line["stroke-opacity"] = el.get("fill-opacity", "1")
        data = [sp.d() for sp in self._subpaths(el)] if _local(el.tag) == "path" else [None]
        p.pieces = []
        for d, length in zip(data, lengths):
            holder = ET.SubElement(p.wrapper, G)
            ET.SubElement(holder, el.tag, line if d is None else line | {"d": d})
            p.pieces.append((holder, length))
        return [replace(u, outline=True) for u in self._along(part, lengths, count)] + [Unit(part)]

    def split(self, pieces: dict[int, int]) -> int:
        """Draw each part in ``pieces`` along its outline in that many even lengths, in the place of its
        first unit (so the reveal order holds); returns how many parts were split."""
        done: set[int] = set()
        units: list[Unit] = []
        for u in self.units:
            if u.part not in pieces:
                units.append(u)
            elif u.part not in done:
                units.extend(self._pieces(u.part, pieces[u.part]))
                done.add(u.part)
        self.units = units
        self._template = None  # the tree changed
        return len(done)

    def to_front(self, part: int) -> int:
        """Reveal ``part`` before everything else (a ground); returns how many units it has."""
        mine = [u for u in self.units if u.part == part]
        self.units = mine + [u for u in self.units if u.part != part]
        return len(mine)

    def _pieces(self, part: int, count: int) -> list[Unit]:
        p = self.parts[part]
        lengths = self.lengths(part) or [0.0]
        if _local(p.element.tag) == "path":
            subs = self._subpaths(p.element)
            self._compound.pop(p.element, None)  # drawn piece by piece instead
            p.wrapper.remove(p.element)
            p.pieces = []
            for j, sp in enumerate(subs):
                copy = ET.Element(p.element.tag, dict(p.element.attrib))
                copy.set("d", sp.d())
                if j:
                    copy.attrib.pop("id", None)
                holder = ET.SubElement(p.wrapper, G)
                holder.append(copy)
                p.pieces.append((holder, sp.length))
        else:
            p.pieces = [(p.wrapper, lengths[0])]
        return self._along(part, lengths, count)

    @staticmethod
    def _along(part: int, lengths: list[float], count: int) -> list[Unit]:
        """``count`` units at even lengths along subpaths of these lengths; the last one shows them whole."""
        total, out = sum(lengths), []
        cum = np.cumsum([0.0, *lengths])
        for i in range(1, count + 1):
            at = total * i / count
            j = min(int(np.searchsorted(cum, at, side="left")) - 1, len(lengths) - 1)
            j = max(j, 0)
            out.append(Unit(part, sub=j, length=None if i == count else float(at - cum[j])))
        return out

    def piece_of(self, unit: int) -> tuple[int, bool]:
        """The part a unit belongs to, and whether the unit completes it."""
        u = self.units[unit]
        later = any(v.part == u.part for v in self.units[unit + 1 :])
        return u.part, not later

    def document(self, shown: int, side: int) -> str:
        """The document with the first ``shown`` units painted, fitted and centred in a ``side`` square."""
        state: dict[int, Unit] = {}
        for u in self.units[:shown]:  # a part's units come in order: its last shown one wins
            state[u.part] = u
        if self._template is None:
            self._template = self._serialize()
        texts, slots = self._template
        out = [texts[0]]
        for (kind, k, j, closing), text in zip(slots, texts[1:]):
            u = state.get(k)
            if kind in "whf":  # a part's wrapper, the holder of its piece j or of its fill: painted, or not
                outlined = self.parts[k].fill_holder is not None
                painted = u is not None and (
                    kind == "w"
                    or (kind == "h" and j <= u.sub and u.outline == outlined)
                    or (kind == "f" and not u.outline)
                )
                out.append(f"<{closing}{'g' if painted else 'defs'}>")
            elif kind == "d":  # whole while hidden: a `use` may still point at it
                compound = self._compound[self.parts[k].element]
                out.append((compound.data(u.groups) if u is not None else compound.d).translate(ATTRIBUTE))
            elif kind == "a" and u is not None and j == u.sub and u.length is not None:
                pieces = self.parts[k].pieces or []
                out.append(f' stroke-dasharray="{u.length:.4f} {pieces[j][1] + 1:.4f}"')
            elif kind == "s":
                out.append(str(side))
            out.append(text)
        return "".join(out)

    def _serialize(self) -> tuple[list[str], list[tuple[str, int, int, str]]]:
        """The document serialized once (the slow part of writing it), cut where steps differ: the texts
        between slots, and per slot (kind, part, piece, "/" for a closing tag). Slots are marked in the tree
        with a token found nowhere else, serialized, read back, and the tree restored."""
        mark = f"slot{uuid.uuid4().hex}"
        tagged: list[ET.Element] = []
        for k, p in enumerate(self.parts):
            p.wrapper.tag = f"{mark}w{k}.0"
            tagged.append(p.wrapper)
            if p.fill_holder is not None:
                p.fill_holder.tag = f"{mark}f{k}.0"
                tagged.append(p.fill_holder)
            for j, (holder, _) in enumerate(p.pieces or []):
                if holder is not p.wrapper:
                    holder.tag = f"{mark}h{k}.{j}"
                    tagged.append(holder)
                p.target(holder).attrib.pop("stroke-dasharray", None)
                p.target(holder).set(f"{mark}a{k}.{j}", "")
            if p.element in self._compound:
                p.element.set("d", f"{mark}d{k}.0")
        self.root.set("width", f"{mark}s0.0")
        self.root.set("height", f"{mark}s0.0")
        text = ET.tostring(self.root, encoding="unicode")
        for el in tagged:
            el.tag = G
        for k, p in enumerate(self.parts):
            for j, (holder, _) in enumerate(p.pieces or []):
                p.target(holder).attrib.pop(f"{mark}a{k}.{j}")
            if p.element in self._compound:
                p.element.set("d", self._compound[p.element].d)
        texts, slots, at = [], [], 0
        for m in re.finditer(rf'(</?| )?{mark}([whadsf])(\d+)\.(\d+)(>|="")?', text):
            texts.append(text[at : m.start()])
            slots.append((m.group(2), int(m.group(3)), int(m.group(4)), "/" if m.group(1) == "</" else ""))
            at = m.end()
        texts.append(text[at:])
        return texts, slots


def _refuse_external(root: ET.Element) -> None:
    """Anything that would make a renderer read a file or a URL is refused (and never fetched)."""
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        for key in HREFS:
            ref = el.get(key)
            if ref is not None and not _local_ref(ref.strip()):
                raise Reject(
                    f"external reference: <{_local(el.tag) or el.tag} href={ref[:80]!r}> (never fetched)"
                )
        texts = list(el.attrib.values()) + ([el.text] if _local(el.tag) == "style" and el.text else [])
        for text in texts:
            for target in URL.findall(text):
                if not _local_ref(target.strip()):
                    raise Reject(f"external reference: url({target[:80]}) (never fetched)")
            if "@import" in text:
                raise Reject("external reference: CSS @import (never fetched)")


def _geometry(root: ET.Element, max_size: float) -> tuple[float, float]:
    """The drawing's size; afterwards the root has a viewBox and no preserveAspectRatio (fit and centre)."""
    w, h = _length(root.get("width")), _length(root.get("height"))
    for name, v in (("width", w), ("height", h)):
        if v is not None and not 0 < v <= max_size:
            raise Reject(f"giant or empty size: {name}={root.get(name)!r} (at most {max_size:g} px)")
    box = root.get("viewBox")
    if box is not None:
        try:
            x, y, bw, bh = (float(v) for v in box.replace(",", " ").split())
        except ValueError:
            raise Reject(f"invalid viewBox {box!r}") from None
        if not (bw > 0 and bh > 0 and all(abs(v) < 1e9 for v in (x, y, bw, bh))):
            raise Reject(f"invalid viewBox {box!r}: width and height must be positive and finite")
        w, h = bw, bh
    elif w is None or h is None:
        raise Reject("no size: neither a viewBox nor width and height in px")
    else:
        root.set("viewBox", f"0 0 {w:g} {h:g}")
    root.attrib.pop("preserveAspectRatio", None)
    return w, h
