"""What an SVG element is, as a curator sees it: line work or fill, shown or hidden, part of the drawing or
an annotation (a ``skip`` selector names it), or a construction guide left in an editor's source file.

Styles are followed through inheritance from presentation attributes and ``style="..."`` declarations; a
document with a ``<style>`` sheet is not resolved further (its elements count as unknown: never split,
never treated as line work by their style alone).
"""

from __future__ import annotations

import fnmatch
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace

INHERITED = ("fill", "fill-rule", "stroke", "stroke-dasharray", "visibility")
LABELS = ("id", "{http://www.inkscape.org/namespaces/inkscape}label", "data-name", "inkscape:label")
LINE_WORK = re.compile(
    r"(?:^|[\s_:-])(?:line|lines|outline|outlines|linework|line-art|lineart|ink)(?:$|[\s_:-])"
)
GUIDES = re.compile(r"^(?:grid|grids|guide|guides|construction(?:[\s_-]?lines?)?|template)$", re.IGNORECASE)


@dataclass(frozen=True)
class Style:
    """The inherited properties that decide how an element is drawn step by step."""

    fill: str = "#000"
    fill_rule: str = "nonzero"
    stroke: str = "none"
    stroke_dasharray: str = "none"
    visibility: str = "visible"
    line_group: bool = False  # inside a group whose id or label says line / outline
    resolved: bool = True  # False when a style sheet may override what the attributes say

    def child(self, el: ET.Element) -> Style:
        """This style as ``el`` inherits and overrides it."""
        found = {k: el.get(k) for k in INHERITED if el.get(k) is not None}
        for decl in (el.get("style") or "").split(";"):
            key, _, value = decl.partition(":")
            if key.strip() in INHERITED and value.strip():
                found[key.strip()] = value.strip()
        found = {k.replace("-", "_"): v.strip().lower() for k, v in found.items() if v.strip() != "inherit"}
        return replace(self, **found, line_group=self.line_group or bool(LINE_WORK.search(label(el).lower())))

    @property
    def stroke_only(self) -> bool:
        """Drawn as a line only: a stroke, no fill (what may be drawn part of the way along its length)."""
        return self.resolved and self.fill in ("none", "transparent") and self.stroke not in ("none", "")

    @property
    def filled(self) -> bool:
        """Paints a fill (or may: a style sheet can say so)."""
        return not self.resolved or self.fill not in ("none", "transparent")

    @property
    def splittable(self) -> bool:
        return self.stroke_only and self.stroke_dasharray in ("none", "") and self.visibility == "visible"


def label(el: ET.Element) -> str:
    """The element's id and editor labels, joined: what says which layer it is."""
    return " ".join(el.get(k, "") for k in LABELS).strip()


def hidden(el: ET.Element) -> bool:
    """display: none on the element itself (not inherited, but it hides the whole subtree)."""
    declared = {
        k.strip(): v.strip().lower()
        for k, _, v in (d.partition(":") for d in (el.get("style") or "").split(";"))
    }
    return (declared.get("display") or (el.get("display") or "").strip().lower()) == "none"


def guide(el: ET.Element) -> bool:
    """A group an editor keeps for construction (OpenMoji's source ``grid``), never part of the drawing."""
    return any(GUIDES.match(part) for part in label(el).split())


class Selector:
    """``skip`` selectors: ``#id`` (glob: ``#kvg:StrokeNumbers_*``), ``.class``, or an element name."""

    def __init__(self, selectors: tuple[str, ...] | list[str]) -> None:
        self.ids = [s[1:] for s in selectors if s.startswith("#")]
        self.classes = {s[1:] for s in selectors if s.startswith(".")}
        self.names = {s for s in selectors if s[:1] not in ("#", ".")}

    def __bool__(self) -> bool:
        return bool(self.ids or self.classes or self.names)

    def matches(self, el: ET.Element, name: str | None) -> bool:
        ident = el.get("id")
        return (
            (name is not None and name in self.names)
            or (ident is not None and any(fnmatch.fnmatchcase(ident, p) for p in self.ids))
            or bool(self.classes.intersection((el.get("class") or "").split()))
        )
