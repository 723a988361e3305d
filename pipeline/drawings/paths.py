"""Path data read as geometry: subpaths with their lengths and outlines.

The renderer ignores ``pathLength`` and restarts a dash pattern at every subpath, so drawing a path
progressively needs its real length per subpath: path data is parsed into absolute segments (relative
commands, implicit line-tos, smooth curves and arcs resolved), each subpath can be written back as its
own absolute ``d``, and curves are followed on a fine polyline (lengths a few tenths of a percent off,
which only shifts where a partial stroke ends, never whether the whole one is drawn). The polyline is
also the subpath's outline, which tells whether one subpath cuts a hole in another
(:mod:`pipeline.drawings.holes`); ``begin`` is where the subpath starts in the path data, so the data
can be cut between subpaths as written.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import numpy as np

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
    begin: int  # offset in the path data of the command that starts it
    commands: list[str] = field(default_factory=list)
    length: float = 0.0
    points: list[tuple[float, float]] = field(default_factory=list)  # its outline as a polyline

    def d(self) -> str:
        return f"M{self.start[0]:.6g} {self.start[1]:.6g}" + "".join(self.commands)


def _numbers(d: str) -> tuple[list[str | float], list[int]]:
    """Commands and numbers, and where each starts in ``d``; arc flags written without separators
    ("a1 1 0 011 1") are split here."""
    out: list[str | float] = []
    starts: list[int] = []
    pos, cmd, arg = 0, "", 0
    while pos < len(d):
        if cmd in "Aa" and arg % 7 in (3, 4):  # a flag: one character 0 or 1
            m = FLAG.match(d, pos)
            if m:
                out.append(float(m.group(1)))
                starts.append(m.start(1))
                pos, arg = m.end(), arg + 1
                continue
        m = TOKEN.search(d, pos)
        if not m:
            break
        if d[pos : m.start()].strip(" \t\r\n,"):
            raise BadPath(f"unexpected {d[pos : m.start()].strip()[:10]!r} in path data")
        tok, pos = m.group(0), m.end()
        starts.append(m.start())
        if tok.isalpha():
            out.append(tok)
            cmd, arg = tok, 0
        else:
            out.append(float(tok))
            arg += 1
    return out, starts


def _curve_length(points: list[tuple[float, float]]) -> float:
    return sum(math.dist(a, b) for a, b in zip(points, points[1:]))


def _bernstein(degree: int) -> np.ndarray:
    """Weights of a Bezier's control points at t = 1/SAMPLES .. 1 (SAMPLES x degree + 1)."""
    t = np.arange(1, SAMPLES + 1)[:, None] / SAMPLES
    i = np.arange(degree + 1)
    return np.array([math.comb(degree, k) for k in i]) * t**i * (1 - t) ** (degree - i)


BERNSTEIN = {2: _bernstein(2), 3: _bernstein(3)}


def _bezier(p: list[tuple[float, float]]) -> np.ndarray:
    """A quadratic or cubic Bezier with control points ``p`` as a polyline, its start left out."""
    return BERNSTEIN[len(p) - 1] @ np.array(p)


def _arc(
    p0: tuple[float, float],
    rx: float,
    ry: float,
    phi: float,
    large: bool,
    sweep: bool,
    p1: tuple[float, float],
) -> np.ndarray:
    """An elliptical arc (SVG endpoint parameterisation, radii scaled up when too small) as a polyline,
    its start left out."""
    rx, ry = abs(rx), abs(ry)
    if rx == 0 or ry == 0 or p0 == p1:
        return np.array([p1])
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
    t = t0 + dt * np.arange(1, SAMPLES + 1) / SAMPLES
    x, y = rx * np.cos(t) + cx, ry * np.sin(t) + cy
    return np.stack([c * x - s * y + (p0[0] + p1[0]) / 2, s * x + c * y + (p0[1] + p1[1]) / 2], axis=1)


def subpaths(d: str) -> list[Subpath]:
    """The path data as absolute subpaths with their lengths; raises BadPath for data it cannot read."""
    toks, starts = _numbers(d)
    out: list[Subpath] = []
    cur = start = (0.0, 0.0)
    last_ctrl: tuple[float, float] | None = None
    last_cmd = ""
    i, cmd, at = 0, "", 0
    while i < len(toks):
        if isinstance(toks[i], str):
            cmd, at = str(toks[i]), starts[i]
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
            out.append(Subpath(start, at, points=[start]))
            cmd = "l" if rel else "L"  # further pairs are line-tos
            last_cmd = "M"
            continue
        if not out or last_cmd == "Z":  # a command after Z starts a new subpath where the last one began
            out.append(Subpath(cur, at, points=[cur]))
        sp = out[-1]
        if up == "Z":
            sp.length += math.dist(cur, start)
            sp.commands.append("Z")
            cur = start
            last_cmd = "Z"
            continue
        if up in "LHV":
            if up == "L":
                end = (a[0] + ox, a[1] + oy)
            else:
                end = (a[0] + ox, cur[1]) if up == "H" else (cur[0], a[0] + oy)
            line = None
            sp.length += math.dist(cur, end)
            sp.points.append(end)
            sp.commands.append(f"L{end[0]:.6g} {end[1]:.6g}")
        elif up in "CS":
            if up == "C":
                c1, c2, end = (a[0] + ox, a[1] + oy), (a[2] + ox, a[3] + oy), (a[4] + ox, a[5] + oy)
            else:
                prev = last_ctrl if last_cmd in "CS" and last_ctrl else cur
                c1 = (2 * cur[0] - prev[0], 2 * cur[1] - prev[1])
                c2, end = (a[0] + ox, a[1] + oy), (a[2] + ox, a[3] + oy)
            line = _bezier([cur, c1, c2, end])
            sp.commands.append("C" + " ".join(f"{v:.6g}" for v in (*c1, *c2, *end)))
            ctrl = c2
        elif up in "QT":
            if up == "Q":
                c1, end = (a[0] + ox, a[1] + oy), (a[2] + ox, a[3] + oy)
            else:
                prev = last_ctrl if last_cmd in "QT" and last_ctrl else cur
                c1, end = (2 * cur[0] - prev[0], 2 * cur[1] - prev[1]), (a[0] + ox, a[1] + oy)
            line = _bezier([cur, c1, end])
            sp.commands.append("Q" + " ".join(f"{v:.6g}" for v in (*c1, *end)))
            ctrl = c1
        else:  # A
            end = (a[5] + ox, a[6] + oy)
            line = _arc(cur, a[0], a[1], a[2], bool(a[3]), bool(a[4]), end)
            sp.commands.append(
                f"A{a[0]:.6g} {a[1]:.6g} {a[2]:.6g} {int(a[3])} {int(a[4])} {end[0]:.6g} {end[1]:.6g}"
            )
        if line is not None:  # a curve, followed on its polyline
            steps = np.diff(line, axis=0, prepend=[cur])
            sp.length += float(np.hypot(steps[:, 0], steps[:, 1]).sum())
            sp.points.extend(map(tuple, line.tolist()))
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
