"""Training data: both shard formats, cell-exact resizing, no unpickling, shard expansion and splitting."""

from __future__ import annotations

import functools
import http.server
import io
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from training_fixtures import TASKS, one_thread, write_released, write_shards  # noqa: F401 (one_thread: autouse)

from pipeline.layout import Layout
from pipeline.taxonomy import Taxonomy
from training.data import DataError, HeadResolver, ShardStream, expand_shards, read_samples, resize_grid

RESOLVE = HeadResolver(Taxonomy.load(), {})


def stream(urls, **kw) -> ShardStream:
    args = dict(batch_size=2, shuffle_buffer=4, cell=16, token=2, seed=0)
    args.update(kw)
    return ShardStream(urls, RESOLVE, **args)


def test_our_format_gives_head_layout_caption_and_cell_sized_tensor(tmp_path):
    write_shards(tmp_path, ["painting", "clay-toys"], per_task=2, per_shard=10)
    samples = read_samples(expand_shards([str(tmp_path)]), RESOLVE, 4, cell=16, token=2)
    by_task = {s["key"].split("_")[0]: s for s in samples}
    assert by_task["painting"]["head"] == TASKS["painting"].head
    assert by_task["clay-toys"]["head"] == TASKS["clay-toys"].head
    assert by_task["painting"]["image"].shape == (3, 48, 48)
    assert by_task["clay-toys"]["image"].shape == (3, 32, 32)
    assert by_task["painting"]["caption"].startswith("3*3 of 9 sub-images")
    img = by_task["painting"]["image"]
    assert img.dtype == torch.uint8 and img.float().std() > 10  # a real picture, not a blank


def test_released_format_head_from_tag_and_from_mapping(tmp_path):
    write_released(tmp_path / "tagged.tar", {"portrait": 6, "emoji": 21}, tagged=True)
    samples = read_samples([str(tmp_path / "tagged.tar")], RESOLVE, 2, cell=16, token=2)
    assert [s["head"] for s in samples] == [6, 21]
    assert all("--lora_up_cur" not in s["caption"] for s in samples)
    assert [tuple(s["image"].shape[1:]) for s in samples] == [(48, 48), (32, 32)]

    write_released(tmp_path / "plain.tar", {"portrait": 6}, tagged=False)
    with pytest.raises(DataError, match="no --lora_up_cur tag"):
        read_samples([str(tmp_path / "plain.tar")], RESOLVE, 1, cell=16, token=2)
    mapped = HeadResolver(Taxonomy.load(), {"portrait painting": 6})
    assert read_samples([str(tmp_path / "plain.tar")], mapped, 1, cell=16, token=2)[0]["head"] == 6


def test_resize_keeps_every_cell_in_its_cell():
    layout = Layout(rows=3, cols=3, cell=40, separator=0)
    colours = [(i * 25, 255 - i * 20, (i * 70) % 256) for i in range(9)]
    grid = Image.new("RGB", (121, 119))  # odd size: uniform scaling would smear cells across boundaries
    for step, c in enumerate(colours):
        grid.paste(c, layout.cell_box(step, grid.size))
    out = np.asarray(resize_grid(grid, layout, 16))
    assert out.shape == (48, 48, 3)
    for step, (r, c) in enumerate(layout.positions):
        cell = out[r * 16 : (r + 1) * 16, c * 16 : (c + 1) * 16].reshape(-1, 3)
        assert (np.abs(cell.astype(int) - colours[step]).max()) <= 1, f"step {step + 1} bled"


def test_pickles_are_never_loaded(tmp_path):
    write_shards(tmp_path, ["painting"], per_task=1, per_shard=1)
    shard = next(tmp_path.glob("*.tar"))
    with tarfile.open(shard) as src:
        members = [(m, src.extractfile(m).read()) for m in src.getmembers()]
    key = members[0][0].name.split(".")[0]

    class Boom:
        def __reduce__(self):
            return (Path(tmp_path / "pwned").touch, ())

    evil = pickle.dumps(Boom())
    with tarfile.open(shard, "w") as dst:
        for m, data in members + [
            (tarfile.TarInfo(f"{key}.pyd"), evil),
            (tarfile.TarInfo(f"{key}.pth"), evil),
        ]:
            m.size = len(data)
            dst.addfile(m, io.BytesIO(data))
    sample = read_samples([str(shard)], RESOLVE, 1, cell=16, token=2)[0]
    assert sample["key"] == key
    assert not (tmp_path / "pwned").exists()


def test_bad_samples_and_specs_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="matches no shard"):
        expand_shards([str(tmp_path / "nope-{000..003}.tar")])
    write_shards(tmp_path, ["painting"], per_task=1, per_shard=1)
    with pytest.raises(DataError, match="not a multiple"):
        read_samples(expand_shards([str(tmp_path)]), RESOLVE, 1, cell=15, token=2)
    with tarfile.open(tmp_path / "nocap.tar", "w") as t:
        info = tarfile.TarInfo("k1.jpg")
        info.size = 3
        t.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(DataError, match=r"k1 .*needs an image .* and a caption"):
        read_samples([str(tmp_path / "nocap.tar")], RESOLVE, 1, cell=16, token=2)


def test_expand_build_folder_glob_and_braces(tmp_path):
    (tmp_path / "out" / "shards").mkdir(parents=True)
    write_shards(tmp_path / "out" / "shards", ["painting"], per_task=3, per_shard=1)
    names = [f"shard-{i:06d}.tar" for i in range(3)]
    assert [Path(u).name for u in expand_shards([str(tmp_path / "out")])] == names
    assert [Path(u).name for u in expand_shards([str(tmp_path / "out/shards/*.tar")])] == names
    braces = expand_shards([str(tmp_path / "out/shards/shard-{000000..000001}.tar")])
    assert [Path(u).name for u in braces] == names[:2]


def test_ranks_read_disjoint_shards_and_batches_never_mix_sizes(tmp_path):
    write_shards(tmp_path, ["painting", "clay-toys"], per_task=4, per_shard=2)
    urls = expand_shards([str(tmp_path)])
    assert len(urls) == 4
    orders = [
        [(i, u) for i, (u, _) in zip(range(4), stream(urls, rank=r, world=2).shard_order(0, 1))]
        for r in range(2)
    ]
    first_epoch = [{u for _, u in o[:2]} for o in orders]
    assert first_epoch[0].isdisjoint(first_epoch[1]) and first_epoch[0] | first_epoch[1] == set(urls)
    it = iter(stream(urls, rank=0, world=2))
    for _ in range(6):
        b = next(it)
        assert b["image"].shape[0] == 2 and len({lay.rows for lay in b["layout"]}) == 1
    with pytest.raises(DataError, match="cannot be split"):
        stream(urls[:1], world=2)


def test_stream_is_reproducible_and_workers_split(tmp_path):
    write_shards(tmp_path, ["painting"], per_task=8, per_shard=2)
    urls = expand_shards([str(tmp_path)])
    keys = lambda s: [k for b, _ in zip(s, range(6)) for k in b["key"]]  # noqa: E731
    assert keys(iter(stream(urls))) == keys(iter(stream(urls)))
    loader = lambda: torch.utils.data.DataLoader(  # noqa: E731
        stream(urls, workers=2, shuffle_buffer=1), batch_size=None, num_workers=2
    )
    got = keys(iter(loader()))
    assert set(got[:8]) == {f"painting_src{i:03d}_s0" for i in range(8)}  # 2 workers x 2 shards = one epoch
    assert got == keys(iter(loader()))


def test_reads_https_shards(tmp_path):
    write_shards(tmp_path, ["painting"], per_task=2, per_shard=2)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/shard-000000.tar"
        samples = read_samples(expand_shards([url]), RESOLVE, 2, cell=16, token=2)
        assert [s["head"] for s in samples] == [TASKS["painting"].head] * 2
    finally:
        server.shutdown()
