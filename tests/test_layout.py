"""Layouts: the paper's 3x3 serpentine and 2x2 U-turn exactly, general grids, and tile/split round trips."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline.layout import Layout, letterbox, split, tile
from pipeline.taxonomy import Taxonomy

TAXONOMY = Taxonomy.load()


def _frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    # differing aspect ratios, so letterboxing is exercised
    return [rng.integers(0, 255, (60 + 17 * i, 100 + 9 * (n - i), 3), dtype=np.uint8) for i in range(n)]


def test_paper_layouts_are_exact():
    nine, four = TAXONOMY["portrait"].layout, TAXONOMY["emoji"].layout
    assert nine.size == (1056, 1056) and nine.cell == 352
    assert nine.positions == [(0, 0), (0, 1), (0, 2), (1, 2), (1, 1), (1, 0), (2, 0), (2, 1), (2, 2)]
    assert nine.final_cell == (2, 2)
    assert four.size == (1024, 1024) and four.cell == 512
    assert four.positions == [(0, 0), (0, 1), (1, 1), (1, 0)]  # the U-turn
    assert four.final_cell == (1, 0)


def test_every_task_uses_its_frame_count():
    for task in TAXONOMY.tasks.values():
        assert task.frames == task.layout.frames in (4, 9)
    assert sorted(t.head for t in TAXONOMY.tasks.values()) == list(range(1, 22))


@pytest.mark.parametrize(
    "layout",
    [
        Layout(rows=3, cols=3, cell=352),
        Layout(rows=2, cols=2, cell=512),
        Layout(rows=4, cols=4, cell=256),
        Layout(rows=2, cols=3, cell=200, order="raster", separator=3),
        Layout(rows=1, cols=5, cell=64, separator=0),
    ],
)
def test_tile_then_split_returns_frames_in_step_order(layout: Layout):
    frames = _frames(layout.frames)
    back = split(tile(frames, layout), layout)
    assert len(back) == layout.frames
    for got, frame in zip(back, frames):
        assert np.array_equal(np.asarray(got), np.asarray(letterbox(frame, layout.content)))


def test_separators_are_black_and_cells_white_around_frames():
    layout = Layout(rows=3, cols=3, cell=352, separator=4)
    grid = np.asarray(tile([np.zeros((10, 100, 3), np.uint8) + 128] * 9, layout))
    assert (grid[:, 350:354] == 0).all() and (grid[702:706, :] == 0).all()
    assert (grid[5, 5] == 255).all()  # a wide frame leaves white above and below it
    assert (grid[176, 176] == 128).all()


def test_split_of_a_resized_grid_keeps_cell_boundaries():
    layout = Layout(rows=3, cols=3, cell=352)
    frames = [np.full((50, 50, 3), 20 * i, np.uint8) for i in range(9)]
    small = tile(frames, layout).resize((528, 528), Image.Resampling.NEAREST)
    for i, cell in enumerate(split(small, layout)):
        arr = np.asarray(cell)
        assert arr.shape[:2] == (174, 174)
        assert abs(int(np.median(arr)) - 20 * i) <= 1


def test_wrong_frame_count_is_refused():
    with pytest.raises(ValueError, match="needs 9 frames, got 4"):
        tile(_frames(4), Layout(rows=3, cols=3, cell=64))
