"""Output and sources on S3, against moto's S3 server on loopback (a real HTTP S3 protocol endpoint),
configured the way users do it: AWS_ENDPOINT_URL and credentials in the environment."""

from __future__ import annotations

import hashlib
import json
import socket
import urllib.request

import pytest
import s3fs
import yaml
from moto.server import ThreadedMotoServer

from tests.refresh_support import run_cli, write_config


@pytest.fixture
def s3(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    # moto keeps its buckets in this process's memory: start each test from an empty store
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/moto-api/reset", method="POST"))
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.mkdir("corpus-bucket")
    yield fs
    server.stop()


def test_refresh_writes_a_complete_dataset_to_s3_from_s3_sources(s3, corpus, reference, tmp_path):
    s3.put_file(str(corpus / "astronaut.mp4"), "corpus-bucket/videos/astronaut.mp4")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "sources": [
                    {"url": "s3://corpus-bucket/videos/astronaut.mp4", "task": "portrait", "id": "astro"},
                    {"path": str(corpus / "coffee.mp4"), "task": "oil-painting", "id": "coffee"},
                ]
            }
        )
    )
    out = "s3://corpus-bucket/datasets/tutorials"
    args = [
        "refresh",
        str(manifest),
        "--out",
        out,
        "--config",
        str(write_config(tmp_path)),
        "--quiet",
        "--json",
    ]
    res = run_cli(args)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout)
    assert (summary["ok"], summary["new_samples"]) == (2, 2)

    s3.invalidate_cache()
    names = [p.split("datasets/tutorials/", 1)[1] for p in s3.find("corpus-bucket/datasets/tutorials")]
    assert "dataset.json" in names and "report.json" in names and "lock.json" not in names
    assert not [n for n in names if "tmp" in n or "staging" in n or n.endswith(".part")]
    shards = sorted(n for n in names if n.startswith("shards/"))
    assert shards and all(n.endswith(".tar") for n in shards)
    index = json.loads(s3.cat_file("corpus-bucket/datasets/tutorials/dataset.json"))
    assert sorted(f"shards/{s['name']}" for s in index["shards"]) == shards
    want = sorted(k for k in reference["keys"] if "_astro_" in k or "_coffee_" in k)
    assert (
        len(want) == 2
        and sorted(
            k
            for r in json.loads(s3.cat_file("corpus-bucket/datasets/tutorials/report.json"))["sources"]
            for k in r["samples"]
        )
        == want
    )

    verify = run_cli(["inspect", out, "--verify"])
    assert verify.returncode == 0, verify.stdout + verify.stderr
    again = run_cli(args)
    assert again.returncode == 0 and json.loads(again.stdout)["skipped"] == 2


def test_s3_glob_lists_a_prefix_and_an_object_replaced_under_its_key_is_rebuilt(s3, corpus, tmp_path):
    for name in ("astronaut", "chelsea"):
        s3.put_file(str(corpus / f"{name}.mp4"), f"corpus-bucket/videos/{name}/take1.mp4")
    s3.pipe_file("corpus-bucket/videos/notes.txt", b"not a video")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        yaml.safe_dump({"sources": [{"glob": "s3://corpus-bucket/videos/**/*.mp4", "task": "painting"}]})
    )
    out = tmp_path / "out"
    args = [
        "refresh",
        str(manifest),
        "--out",
        str(out),
        "--config",
        str(write_config(tmp_path)),
        "--quiet",
        "--json",
    ]
    first = run_cli(args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (json.loads(first.stdout)["ok"], json.loads(first.stdout)["sources"]) == (2, 2)
    assert not (out / "cache").exists()

    again = json.loads(run_cli(args).stdout)
    assert (again["processed"], again["skipped"]) == (0, 2)  # ETags unchanged: nothing downloaded

    s3.put_file(str(corpus / "extra.mp4"), "corpus-bucket/videos/chelsea/take1.mp4")  # same key, new content
    res = run_cli(args)
    changed = json.loads(res.stdout)
    assert (changed["processed"], changed["skipped"], changed["ok"], changed["retired_shards"]) == (
        1,
        1,
        1,
        1,
    )
    report = json.loads((out / "report.json").read_text())
    assert [r["uri"] for r in report["sources"]] == ["s3://corpus-bucket/videos/chelsea/take1.mp4"]
    assert report["sources"][0]["sha256"] == hashlib.sha256((corpus / "extra.mp4").read_bytes()).hexdigest()
    assert run_cli(["inspect", str(out), "--verify"]).returncode == 0
