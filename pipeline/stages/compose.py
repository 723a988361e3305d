"""Tile and caption: each selected sequence becomes one grid image with its caption."""
from __future__ import annotations

from pipeline.layout import tile
from pipeline.work import Work


class Tile:
    name = "tile"

    def __call__(self, work: Work) -> Work:
        layout = work.source.task.layout
        for seq in work.sequences:
            seq.grid = tile([f.image for f in seq.frames], layout)
        return work


class Caption:
    name = "caption"

    def __call__(self, work: Work) -> Work:
        for seq in work.sequences:
            seq.caption = work.source.task.caption(work.source.subject)
        return work
