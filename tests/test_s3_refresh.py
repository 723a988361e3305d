"""Output and sources on S3, against moto's S3 server on loopback (a real HTTP S3 protocol endpoint),
configured the way users do it: AWS_ENDPOINT_URL and credentials in the environment."""
from __future__ import annotations

import json
import socket

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
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.mkdir("corpus-bucket")
    yield fs
    server.stop()


def test_refresh_writes_a_complete_dataset_to_s3_from_s3_sources(s3, corpus, reference, tmp_path):
    s3.put_file(str(corpus / "astronaut.mp4"), "corpus-bucket/videos/astronaut.mp4")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"sources": [
        {"url": "s3://corpus-bucket/videos/astronaut.mp4", "task": "portrait", "id": "astro"},
        {"path": str(corpus / "coffee.mp4"), "task": "oil-painting", "id": "coffee"}]}))
    out = "s3://corpus-bucket/datasets/tutorials"
    args = ["refresh", str(manifest), "--out", out, "--config", str(write_config(tmp_path)), "--quiet", "--json"]
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
    assert len(want) == 2 and sorted(k for r in json.loads(s3.cat_file(
        "corpus-bucket/datasets/tutorials/report.json"))["sources"] for k in r["samples"]) == want

    verify = run_cli(["inspect", out, "--verify"])
    assert verify.returncode == 0, verify.stdout + verify.stderr
    again = run_cli(args)
    assert again.returncode == 0 and json.loads(again.stdout)["skipped"] == 2
