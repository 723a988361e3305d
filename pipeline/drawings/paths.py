"""Lengths of stroked outlines, so a stroke can be drawn part of the way along (``stroke-dasharray``).

The renderer ignores ``pathLength`` and restarts a dash pattern at every subpath, so drawing a path
progressively needs its real length per subpath: path data is parsed into absolute segments (relative
commands, implicit line-tos, smooth curves and arcs resolved), each subpath can be written back as its
own absolute ``d``, and curve lengths are measured on a fine polyline (a few tenths of a percent off,
which only shifts where a partial stroke ends, never whether the whole one is drawn).
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

TOKEN = re.compile(r"[MmLlHhVvCcSsQqTtAaZz]|[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
FLAG = re.compile(r"\s*,?\s*([01])")
ARITY = {"M": 2, "L": 2, "H": 1, "V": 1, "C": 6, "S": 4, "Q": 4, "T": 2, "A": 7, "Z": 0}
SAMPLES = 24  # polyline points per curve or arc when measuring


class BadPath(ValueError):
    """Path data that cannot be read (the element is then drawn whole, never split)."""


@dataclass
class Subpath:
    """One subpath in absolute coordinates: its start, its segments as absolute commands, closed or not."""

    start: tuple[float, float]
    commands: list[str] = field(default_factory=list)
    length: float = 0.0

    def d(self) -> str:
        return f"M{self.start[0]:.6g} {self.start[1]:.6g}" + "".join(self.commands)


def _numbers(d: str) -> list[str | float]:
    """Commands and numbers; arc flags written without separators ("a1 1 0 011 1") are split here."""
    out: list[str | float] = []
    pos, cmd, arg = 0, "", 0
    while pos < len(d):
        if cmd in "Aa" and arg % 7 in (3, 4):  # a flag: one character 0 or 1
            m = FLAG.match(d, pos)
            if m:
                out.append(float(m.group(1)))
                pos, arg = m.end(), arg + 1
                continue
        m = TOKEN.search(d, pos)
        if not m:
            break
        if d[pos : m.start()].strip(" \t\r\n,"):
            raise BadPath(f"unexpected {d[pos : m.start()].strip()[:10]!r} in path data")
        tok, pos = m.group(0), m.end()
        if tok.isalpha():
            out.append(tok)
            cmd, arg = tok, 0
        else:
            out.append(float(tok))
            arg += 1
    return out


def _curve_length(points: list[tuple[float, float]]) -> float:
    return sum(math.dist(a, b) for a, b in zip(points, points[1:]))


def _bezier(p: list[tuple[float, float]]) -> float:
    """Length of a quadratic or cubic Bezier with control points ``p``."""

    def at(t: float) -> tuple[float, float]:
        q = p
        while len(q) > 1:
            q = [(a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t) for a, b in zip(q, q[1:])]
        return q[0]

    return _curve_length([at(i / SAMPLES) for i in range(SAMPLES + 1)])


def _arc(
    p0: tuple[float, float],
    rx: float,
    ry: float,
    phi: float,
    large: bool,
    sweep: bool,
    p1: tuple[float, float],
) -> float:
    """Length of an elliptical arc (SVG endpoint parameterisation, radii scaled up when too small)."""
    rx, ry = abs(rx), abs(ry)
    if rx == 0 or ry == 0 or p0 == p1:
        return math.dist(p0, p1)
    c, s = math.cos(math.radians(phi)), math.sin(math.radians(phi))
    dx, dy = (p0[0] - p1[0]) / 2, (p0[1] - p1[1]) / 2
    x1, y1 = c * dx + s * dy, -s * dx + c * dy
    scale = x1 * x1 / (rx * rx) + y1 * y1 / (ry * ry)
    if scale > 1:
        rx, ry = rx * math.sqrt(scale), ry * math.sqrt(scale)
    num = rx * rx * ry * ry - rx * rx * y1 * y1 - ry * ry * x1 * x1
    den = rx * rx * y1 * y1 + ry * ry * x1 * x1
    k = math.sqrt(max(num, 0) / den) * (-1 if large == sweep else 1)
    cx, cy = k * rx * y1 / ry, -k * ry * x1 / rx
    t0 = math.atan2((y1 - cy) / ry, (x1 - cx) / rx)
    dt = math.atan2((-y1 - cy) / ry, (-x1 - cx) / rx) - t0
    if sweep and dt < 0:
        dt += math.tau
    elif not sweep and dt > 0:
        dt -= math.tau
    pts = [
        (rx * math.cos(t0 + dt * i / SAMPLES), ry * math.sin(t0 + dt * i / SAMPLES))
        for i in range(SAMPLES + 1)
    ]
    return _curve_length(pts)


def subpaths(d: str) -> list[Subpath]:
    """The path data as absolute subpaths with their lengths; raises BadPath for data it cannot read."""
    toks = _numbers(d)
    out: list[Subpath] = []
    cur = start = (0.0, 0.0)
    last_ctrl: tuple[float, float] | None = None
    last_cmd = ""
    i, cmd = 0, ""
    while i < len(toks):
        if isinstance(toks[i], str):
            cmd = str(toks[i])
            i += 1
        elif not cmd or cmd in "Zz":
            raise BadPath("numbers without a command in path data")
        up, rel = cmd.upper(), cmd.islower()
        args = toks[i : i + ARITY[up]]
        if len(args) < ARITY[up] or any(isinstance(a, str) for a in args):
            raise BadPath(f"command {cmd!r} with too few numbers")
        i += ARITY[up]
        a = [float(x) for x in args]  # type: ignore[arg-type]
        ox, oy = cur if rel else (0.0, 0.0)
        ctrl = None
        if up == "M":
            cur = start = (a[0] + ox, a[1] + oy)
            out.append(Subpath(start))
            cmd = "l" if rel else "L"  # further pairs are line-tos
            last_cmd = "M"
            continue
        if not out:
            out.append(Subpath(cur))
        sp = out[-1]
        if up == "Z":
            sp.length += math.dist(cur, start)
            sp.commands.append("Z")
            cur = start
            out.append(Subpath(start))  # a command after Z starts a new subpath at the same point
            last_cmd = "Z"
            continue
        if up in "LHV":
            if up == "L":
                end = (a[0] + ox, a[1] + oy)
            else:
                end = (a[0] + ox, cur[1]) if up == "H" else (cur[0], a[0] + oy)
            sp.length += math.dist(cur, end)
            sp.commands.append(f"L{end[0]:.6g} {end[1]:.6g}")
        elif up in "CS":
            if up == "C":
                c1, c2, end = (a[0] + ox, a[1] + oy), (a[2] + ox, a[3] + oy), (a[4] + ox, a[5] + oy)
            else:
                prev = last_ctrl if last_cmd in "CS" and last_ctrl else cur
                c1 = (2 * cur[0] - prev[0], 2 * cur[1] - prev[1])
                c2, end = (a[0] + ox, a[1] + oy), (a[2] + ox, a[3] + oy)
            sp.length += _bezier([cur, c1, c2, end])
            sp.commands.append("C" + " ".join(f"{v:.6g}" for v in (*c1, *c2, *end)))
            ctrl = c2
        elif up in "QT":
            if up == "Q":
                c1, end = (a[0] + ox, a[1] + oy), (a[2] + ox, a[3] + oy)
            else:
                prev = last_ctrl if last_cmd in "QT" and last_ctrl else cur
                c1, end = (2 * cur[0] - prev[0], 2 * cur[1] - prev[1]), (a[0] + ox, a[1] + oy)
            sp.length += _bezier([cur, c1, end])
            sp.commands.append("Q" + " ".join(f"{v:.6g}" for v in (*c1, *end)))
            ctrl = c1
        else:  # A
            end = (a[5] + ox, a[6] + oy)
            sp.length += _arc(cur, a[0], a[1], a[2], bool(a[3]), bool(a[4]), end)
            sp.commands.append(
                f"A{a[0]:.6g} {a[1]:.6g} {a[2]:.6g} {int(a[3])} {int(a[4])} {end[0]:.6g} {end[1]:.6g}"
            )
        cur, last_ctrl, last_cmd = end, ctrl, up
    return [sp for sp in out if sp.commands]


def _floats(value: str | None) -> list[float]:
    try:
        return [float(v) for v in re.split(r"[\s,]+", (value or "").strip()) if v]
    except ValueError:
        raise BadPath(f"not a list of numbers: {value!r}") from None


def shape_length(el: ET.Element, name: str) -> float:
    """Stroke length of a basic shape in its own user units; raises BadPath for units it cannot resolve."""

    def num(key: str, default: float | None = None) -> float:
        v = el.get(key)
        if v is None and default is not None:
            return default
        try:
            return float(v or "")
        except ValueError:
            raise BadPath(f"{name} {key}={v!r} is not a plain number") from None

    if name == "line":
        return math.dist((num("x1", 0), num("y1", 0)), (num("x2", 0), num("y2", 0)))
    if name == "circle":
        return math.tau * num("r")
    if name == "ellipse":
        a, b = num("rx"), num("ry")
        h = ((a - b) / (a + b)) ** 2 if a + b else 0
        return math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))  # Ramanujan
    if name == "rect":
        return 2 * (num("width") + num("height"))
    if name in ("polyline", "polygon"):
        v = _floats(el.get("points"))
        pts = list(zip(v[0::2], v[1::2]))
        if name == "polygon" and pts:
            pts.append(pts[0])
        return _curve_length(pts)
    raise BadPath(f"<{name}> has no stroke length")
