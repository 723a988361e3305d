"""An SVG file as a drawing: its drawable elements in paint order, and the document showing the first k.

Paint order is document order: later elements cover earlier ones. The drawable units are the leaves that
paint (shapes, paths, text, ``use`` instances, images, ``switch``) reached through the containers that
render their children (``g``, ``a``, nested ``svg``); everything under ``defs``, ``clipPath``, ``mask``,
``pattern``, ``marker``, ``symbol`` and the like only paints when referenced. Every unit is wrapped in a
plain ``<g>`` once; hiding a unit renames its wrapper to ``<defs>``, so ids, gradients, clip paths and
``use`` targets inside it stay resolvable and nothing else in the document moves. A compound path (one
``d`` holding several subpaths, e.g. both eyes) is drawn subpath by subpath: its unit k shows the path
data up to the end of subpath k (a prefix, so relative coordinates stay right).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from pipeline.config import VectorConfig
from pipeline.drawings.safe_xml import UnsafeXml, parse
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
G, DEFS = f"{{{SVG_NS}}}g", f"{{{SVG_NS}}}defs"
HREFS = ("href", f"{{{XLINK_NS}}}href")
SUBPATH = re.compile(r"[Mm]")
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
class Unit:
    """One drawable unit: its wrapper, and for a subpath of a compound path, the path and where it ends."""

    wrapper: ET.Element
    path: ET.Element | None = None
    end: int = 0


def _subpath_ends(d: str) -> list[int]:
    """Offsets in ``d`` where each subpath ends (the next moveto starts); one entry for a simple path."""
    starts = [m.start() for m in SUBPATH.finditer(d)][1:]
    return [e for e in starts if d[:e].strip()] + [len(d)]


class SvgDrawing:
    """A parsed, checked SVG. Raises Reject with the reason for input that must not or cannot be drawn."""

    def __init__(self, data: bytes, cfg: VectorConfig) -> None:
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
        self.root = root
        self.text = any(_local(e.tag) == "text" for e in root.iter() if isinstance(e.tag, str))
        self.units: list[Unit] = []  # in paint order
        self._full_d: dict[ET.Element, str] = {}
        self._wrap(root)
        if not self.units:
            raise Reject("no drawable elements: nothing in the document paints")

    def _wrap(self, parent: ET.Element) -> None:
        for i, child in enumerate(list(parent)):
            name = _local(child.tag) if isinstance(child.tag, str) else None
            if name in CONTAINERS:
                self._wrap(child)
            elif name in DRAWABLE:
                wrapper = ET.Element(G)
                parent.remove(child)
                parent.insert(i, wrapper)
                wrapper.append(child)
                ends = _subpath_ends(child.get("d", "")) if name == "path" else []
                if len(ends) > 1:
                    self._full_d[child] = child.get("d", "")
                    self.units.extend(Unit(wrapper, child, end) for end in ends)
                else:
                    self.units.append(Unit(wrapper))

    def document(self, shown: int, side: int) -> str:
        """The document with the first ``shown`` units painted, fitted and centred in a ``side`` square."""
        for unit in self.units:
            unit.wrapper.tag = DEFS
        for path, d in self._full_d.items():
            path.set("d", d)  # whole while hidden: a `use` may still point at it
        for unit in self.units[:shown]:  # subpaths of one path come in order: the last shown one wins
            unit.wrapper.tag = G
            if unit.path is not None:
                unit.path.set("d", self._full_d[unit.path][: unit.end])
        self.root.set("width", str(side))
        self.root.set("height", str(side))
        return ET.tostring(self.root, encoding="unicode")


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
