"""Align: put every frame of a video into the coordinates of the work it shows.

Inside a shot each frame is registered to the shot's last frame (or, failing that, to its successor),
which undoes jitter, zooms and pans. Shots are then linked when their frames register to a recent
earlier shot: re-framed shots of one piece of work become one *group*, whatever was cut in between
(a talking head, B-roll, a title card). Every frame of a group gets ``Frame.warp``, the 3x3 transform
into the group's reference view (its last shot's last frame), so completion is measured in the work's
own coordinates across cuts.
"""
from __future__ import annotations

import numpy as np

from pipeline.config import AlignConfig
from pipeline.footage.register import Features, features, is_identity, register
from pipeline.work import Group, Work

PROBES = 4  # frames per shot registered to find out whether the camera moves at all


class _Features(dict):
    """Features of analysis frames, computed the first time a frame is registered."""

    def __init__(self, work: Work) -> None:
        super().__init__()
        self.work = work

    def __missing__(self, i: int) -> Features:
        self[i] = features(self.work.frames[i].image)
        return self[i]


def _shot_warps(feats: _Features, a: int, b: int, size: tuple[int, int], probes: int) -> list[np.ndarray]:
    """Per frame of shot [a, b), the transform onto the shot's last frame (identity when the camera stands still).

    A few frames spread over the shot are registered first; when none of them moved (or had too little
    in common with the end to tell, as a blank canvas), the camera stood still (jitter, a zoom or a pan
    would show in them) and the shot costs no more registration."""
    key = b - 1
    sample = sorted({int(round(x)) for x in np.linspace(a, key - 1, min(probes, key - a))}) if key > a else []
    if all((m := register(feats[i], feats[key])) is None or is_identity(m, size) for i in sample):
        return [np.eye(3) for _ in range(b - a)]
    warps = [np.eye(3) for _ in range(b - a)]
    for i in range(b - 2, a - 1, -1):
        m = register(feats[i], feats[key])
        if m is None:  # too different from the end of the shot: go through the next frame instead
            step = register(feats[i], feats[i + 1])
            m = warps[i + 1 - a] @ step if step is not None else warps[i + 1 - a]
        warps[i - a] = m
    if all(is_identity(m, size) for m in warps):
        return [np.eye(3) for _ in warps]
    return warps


def _links(work: Work, feats: _Features, shot_warps: list[list[np.ndarray]],
           back: int) -> dict[int, tuple[int, np.ndarray]]:
    """shot -> (the most recent of ``back`` earlier shots whose last frame its last or first frame
    registers to, the transform from this shot's last frame to that one's)."""
    links: dict[int, tuple[int, np.ndarray]] = {}
    for j, (a, b) in enumerate(work.shots):
        for i in range(j - 1, max(-1, j - 1 - back), -1):
            key_i = work.shots[i][1] - 1
            m = register(feats[b - 1], feats[key_i])
            if m is None and b - 1 > a:
                first = register(feats[a], feats[key_i])
                m = first @ np.linalg.inv(shot_warps[j][0]) if first is not None else None
            if m is not None:
                links[j] = (i, m)
                break
    return links


class Align:
    name = "align"

    def __init__(self, cfg: AlignConfig) -> None:
        self.cfg = cfg

    def __call__(self, work: Work) -> Work:
        frames = work.frames
        if work.source.kind == "images" or not self.cfg.enabled:  # each shot (a folder: one) stands alone
            work.groups = [Group(shots=[s], reference=s[1] - 1) for s in work.shots]
            return work
        h, w = frames[0].image.shape[:2]
        feats = _Features(work)
        shot_warps = [_shot_warps(feats, a, b, (w, h), PROBES) for a, b in work.shots]
        links = _links(work, feats, shot_warps, self.cfg.link_back)
        # Groups: each shot joins the group of the shot it links to. Keys map to the group's first key by
        # following links back, then into the group's reference view (its last shot's key frame).
        group_of: dict[int, int] = {}
        to_first: dict[int, np.ndarray] = {}
        groups: list[list[int]] = []
        for j in range(len(work.shots)):
            if j in links:
                i, m = links[j]
                group_of[j], to_first[j] = group_of[i], to_first[i] @ m
                groups[group_of[i]].append(j)
            else:
                group_of[j], to_first[j] = len(groups), np.eye(3)
                groups.append([j])
        to_ref = {j: np.linalg.inv(to_first[g[-1]]) @ to_first[j] for g in groups for j in g}
        for j, (a, b) in enumerate(work.shots):
            for i in range(a, b):
                frames[i].warp = to_ref[j] @ shot_warps[j][i - a]
        work.groups = [Group(shots=[work.shots[j] for j in m], reference=work.shots[m[-1]][1] - 1) for m in groups]
        return work
