"""Remote sources over real HTTP on loopback (a server that sends ETag and Last-Modified, like nginx):
fetched into a bounded scratch cache that is empty after the run, never downloaded again while their
ETag holds, rebuilt when the object at the same URL changes."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import http.server
import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
import yaml

from makeanything.cli import main
from pipeline.intake.remote import expand_glob
from pipeline.intake.scratch import CacheFull, ScratchCache
from pipeline.work import RemoteInfo


class _ETagHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with an ETag from size and mtime; logs each request as (method, path)."""

    def end_headers(self) -> None:
        path = Path(self.translate_path(self.path))
        if path.is_file():
            st = path.stat()
            self.send_header("ETag", f'"{st.st_size:x}-{st.st_mtime_ns:x}"')
        self.server.requests.append((self.command, self.path))  # type: ignore[attr-defined]
        super().end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def http_site(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_ETagHandler, directory=str(root))
    )
    server.requests = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}", server.requests
    server.shutdown()


class _DiskWatch:
    """Samples the bytes of downloads in a cache folder every few ms while a run goes on."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.peak, self.seen = folder, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(FileNotFoundError), open(self.folder / ".lock") as lock:
                fcntl.flock(
                    lock, fcntl.LOCK_SH
                )  # the cache's own lock: no entry is added or dropped meanwhile
                total = sum(
                    p.stat().st_size for p in self.folder.iterdir() if p.suffix not in (".json", ".lock")
                )
                self.peak, self.seen = max(self.peak, total), self.seen + (total > 0)
            time.sleep(0.005)

    def __enter__(self) -> _DiskWatch:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()


def _refresh(capsys, manifest, out, config) -> dict:
    capsys.readouterr()
    assert (
        main(["refresh", str(manifest), "--out", str(out), "--config", str(config), "--quiet", "--json"]) == 0
    )
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_http_sources_go_through_a_bounded_cache_and_are_not_fetched_again(
    tutorials, corpus, http_site, tmp_path, capsys
):
    root, base, requests = http_site
    names = {"astronaut": "portrait", "coffee": "oil-painting", "chelsea": "painting"}
    for name in names:
        shutil.copy(tutorials[name][0], root / f"{name}.mp4")
    biggest = max((root / f"{n}.mp4").stat().st_size for n in names)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {"sources": [{"url": f"{base}/{n}.mp4", "task": t, "id": n} for n, t in names.items()]}
        )
    )
    cache, out = tmp_path / "scratch", tmp_path / "out"
    config = tmp_path / "c.yaml"  # two worker threads compete for room for one download at a time
    config.write_text(
        yaml.safe_dump(
            {
                "cache": {"dir": str(cache), "max_bytes": biggest + 1000},
                "cluster": {"workers": 2, "processes": False},
            }
        )
    )
    with _DiskWatch(cache) as watch:
        s = _refresh(capsys, manifest, out, config)
    assert (s["processed"], s["ok"]) == (3, 3)
    assert watch.seen and 0 < watch.peak <= biggest + 1000
    assert not cache.exists()  # emptied and removed at the end of the run
    assert sorted(p for m, p in requests if m == "GET") == sorted(
        f"/{n}.mp4" for n in names
    )  # each read once

    requests.clear()
    s = _refresh(capsys, manifest, out, config)
    assert (s["processed"], s["skipped"]) == (0, 3)
    assert {m for m, _ in requests} == {"HEAD"}  # ETags unchanged: nothing downloaded

    requests.clear()
    shutil.copy(corpus / "extra.mp4", root / "coffee.mp4")  # new content at the same URL
    s = _refresh(capsys, manifest, out, config)
    assert (s["processed"], s["skipped"], s["ok"], s["retired_shards"]) == (1, 2, 1, 1)
    assert [p for m, p in requests if m == "GET"] == ["/coffee.mp4"]
    report = json.loads((out / "report.json").read_text())
    assert report["sources"][0]["sha256"] == hashlib.sha256((root / "coffee.mp4").read_bytes()).hexdigest()


def test_a_source_larger_than_the_cache_fails_with_the_reason_and_the_rest_go_on(
    tutorials, http_site, tmp_path, capsys
):
    root, base, _ = http_site
    shutil.copy(tutorials["coffee"][0], root / "coffee.mp4")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "sources": [
                    {"url": f"{base}/coffee.mp4", "task": "oil-painting"},
                    {"path": str(tutorials["astronaut"][0]), "task": "portrait"},
                ]
            }
        )
    )
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump({"cache": {"max_bytes": 1000}, "cluster": {"workers": 1, "processes": False}})
    )
    s = _refresh(capsys, manifest, tmp_path / "out", config)
    assert (s["ok"], s["failed"]) == (1, 1)
    failed = [
        r
        for r in json.loads((tmp_path / "out" / "report.json").read_text())["sources"]
        if r["status"] == "failed"
    ]
    assert "coffee.mp4" in failed[0]["reason"] and "cache.max_bytes (1000)" in failed[0]["reason"]


def test_scratch_cache_reuses_a_killed_runs_download_only_while_the_signature_holds(http_site, tmp_path):
    root, base, requests = http_site
    (root / "a.bin").write_bytes(os.urandom(5000))
    url, cache = f"{base}/a.bin", ScratchCache(tmp_path / "c", max_bytes=10_000)
    info = RemoteInfo(5000, "etag-1")
    with cache.fetch(url, info) as (path, sha):
        assert (
            path.read_bytes() == (root / "a.bin").read_bytes()
            and sha == hashlib.sha256(path.read_bytes()).hexdigest()
        )
        # as a killed worker would leave it: the record names a process that no longer exists
        meta = next((tmp_path / "c").glob("*.json"))
        shutil.copy(path, tmp_path / "kept")
        shutil.copy(meta, tmp_path / "kept.json")
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [".lock"]
    shutil.copy(tmp_path / "kept", path)
    record = json.loads((tmp_path / "kept.json").read_text())
    meta.write_text(json.dumps({**record, "pid": 2**22 + 1}))  # beyond pid_max: never alive
    requests.clear()
    with cache.fetch(url, info) as (path2, sha2):
        assert (path2, sha2) == (path, sha) and requests == []  # same ETag and size: reused, not fetched
    meta.write_text(json.dumps({**record, "pid": 2**22 + 1}))
    shutil.copy(tmp_path / "kept", path)
    with cache.fetch(url, RemoteInfo(5000, "etag-2")) as (path3, _):
        assert path3 != path and requests == [("GET", "/a.bin")]  # another ETag: another entry, downloaded
    cache.clear()
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [".lock"]
    with pytest.raises(CacheFull, match="exceed cache.max_bytes"):
        with cache.fetch(url, RemoteInfo(20_000, "big")):
            pass


def test_glob_over_an_http_index_listing_finds_the_objects_with_their_etags(http_site):
    root, base, _ = http_site
    (root / "sub").mkdir()
    for rel in ("a.mp4", "sub/b.mp4", "notes.txt"):
        (root / rel).write_bytes(rel.encode())
    found = expand_glob(f"{base}/**/*.mp4")
    assert [url for url, _ in found] == [f"{base}/a.mp4", f"{base}/sub/b.mp4"]
    etag = f"{len(b'a.mp4'):x}-{(root / 'a.mp4').stat().st_mtime_ns:x}"
    assert f"etag={etag};" in found[0][1].signature and found[0][1].size == len(b"a.mp4")
    (root / "a.mp4").write_bytes(b"changed content")
    assert expand_glob(f"{base}/*.mp4")[0][1].signature != found[0][1].signature
