"""Credentials in a URL are used and never written: a build whose caption endpoint and remote source hold a
password (and a signed link's token), and an evaluation whose judge does, leave no trace of them in any file
of the output (tar members and the ledger included) nor in what the command printed; and they still work.

Real servers on loopback: the chat-completions server of tests/vlm_server.py, and a static file server that
answers 401 unless the request carries the source URL's credentials as Basic auth.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import shutil
import tarfile
import threading
from pathlib import Path

import pytest
import yaml

from pipeline.io.http_auth import request
from pipeline.io.redact import redact_json, redact_text, redact_url
from tests.refresh_support import run_cli

SOURCE_PW, LINK_TOKEN, CAPTION_PW, JUDGE_PW = (
    "pw-src-41c7e2",
    "tok-9a03bd",
    "pw-cap-6f18aa",
    "pw-judge-c25d90",
)
SECRETS = [SOURCE_PW, LINK_TOKEN, CAPTION_PW, JUDGE_PW]


@pytest.mark.parametrize(
    "url, shown",
    [
        ("http://user:secret@host:8/v1", "http://***@host:8/v1"),
        ("https://TOKEN@github.com/a/b.mp4", "https://***@github.com/a/b.mp4"),
        (
            "https://b.s3.amazonaws.com/v.mp4?X-Amz-Credential=AK%2F1&X-Amz-Date=1&X-Amz-Signature=ab#t",
            "https://b.s3.amazonaws.com/v.mp4?X-Amz-Credential=***&X-Amz-Date=1&X-Amz-Signature=***#t",
        ),
        (
            "http://h/v.mp4?token=t&api_key=k&part=2&sig=s",
            "http://h/v.mp4?token=***&api_key=***&part=2&sig=***",
        ),
        ("s3://KEY:SECRET@bucket/videos/a.mp4", "s3://***@bucket/videos/a.mp4"),
        ("http://h/v.mp4?part=2&x=%20y", "http://h/v.mp4?part=2&x=%20y"),  # nothing secret: the same string
        ("/local/path/v.mp4", "/local/path/v.mp4"),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_redact_text_finds_urls_and_bare_userinfo_in_messages():
    msg = "failed (http://u:p1@h/x?token=t2): ValueError: invalid address 'u:p3@10.0.0.5:8786'; mail bob@example.com"
    out = redact_text(msg)
    assert not any(s in out for s in ("p1", "t2", "p3")), out
    assert "http://***@h/x?token=***" in out and "'***@10.0.0.5:8786'" in out and "bob@example.com" in out
    assert redact_json({"a": [msg, 3, None], "b": {"c": "plain"}}) == {
        "a": [out, 3, None],
        "b": {"c": "plain"},
    }


class _AuthFiles(http.server.SimpleHTTPRequestHandler):
    """Static files (with Last-Modified) for requests that carry the expected Basic auth; 401 for the rest.
    Logs each request as (method, path)."""

    def send_head(self):
        self.server.requests.append((self.command, self.path))  # type: ignore[attr-defined]
        if self.headers.get("Authorization") != self.server.expect:  # type: ignore[attr-defined]
            self.send_error(401, "credentials wanted")
            return None
        return super().send_head()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def auth_site(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_AuthFiles, directory=str(root))
    )
    server.expect = "Basic " + base64.b64encode(f"src:{SOURCE_PW}".encode()).decode()  # type: ignore[attr-defined]
    server.requests = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, server.server_address[1], server.requests
    server.shutdown()
    server.server_close()


def test_credentials_in_a_url_go_as_basic_auth_not_in_the_request_line(auth_site):
    import urllib.error
    import urllib.request

    root, port, requests = auth_site
    (root / "a.txt").write_text("hello")
    with urllib.request.urlopen(request(f"http://src:{SOURCE_PW}@127.0.0.1:{port}/a.txt")) as r:
        assert r.read() == b"hello"
    with pytest.raises(urllib.error.HTTPError, match="401"):
        urllib.request.urlopen(request(f"http://src:wrong@127.0.0.1:{port}/a.txt"))
    assert requests[0] == ("GET", "/a.txt")


def secrets_in(out: Path, printed: str) -> list[str]:
    """Where any secret (or the Basic-auth form of one) shows: files under ``out``, every member of every
    tar, and what the command printed."""
    forms = SECRETS + [base64.b64encode(f"{u}:{p}".encode()).decode() for u, p in [("src", SOURCE_PW)]]
    found = [f"printed: {s}" for s in forms if s in printed]
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        blobs = {str(path): path.read_bytes()}
        if path.suffix == ".tar":
            with tarfile.open(path) as tar:
                blobs |= {
                    f"{path}:{m.name}": tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()
                }
        found += [f"{where}: {s}" for where, data in blobs.items() for s in forms if s.encode() in data]
    return found


def test_a_build_uses_the_credentials_and_writes_them_nowhere(tutorials, auth_site, vlm, tmp_path):
    root, port, requests = auth_site
    shutil.copy(tutorials["astronaut"][0], root / "astronaut.mp4")
    site = f"http://src:{SOURCE_PW}@127.0.0.1:{port}"
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "sources": [
                    {"url": f"{site}/astronaut.mp4?token={LINK_TOKEN}&part=1", "task": "portrait"},
                    {"url": f"{site}/missing.mp4?token={LINK_TOKEN}", "task": "portrait"},
                ]
            }
        )
    )
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"cluster": {"workers": 1, "processes": False}}))
    out = tmp_path / "out"
    caption_url = vlm.url.replace("http://", f"http://cap:{CAPTION_PW}@")
    args = ["build", str(manifest), "--out", str(out), "--config", str(config), "--caption-url", caption_url]

    first = run_cli(args)
    assert first.returncode == 0, first.stderr
    report = json.loads((out / "report.json").read_text())
    assert (report["totals"]["ok"], report["totals"]["samples"] > 0) == (1, True)
    assert report["caption"]["captioned"] == report["totals"]["samples"]  # the VLM was reached
    assert (
        vlm.requests[0]["headers"]["Authorization"]
        == "Basic " + base64.b64encode(f"cap:{CAPTION_PW}".encode()).decode()
    )
    shown = f"http://***@127.0.0.1:{port}/astronaut.mp4?token=***&part=1"
    assert report["sources"][0]["uri"] == shown and report["config"]["caption"]["url"].startswith(
        "http://***@"
    )
    assert "HTTP Error 404" in report["sources"][1]["reason"]

    requests.clear()
    again = run_cli(args + ["--quiet"])  # the same source by its redacted name: nothing to redo
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "report.json").read_text())["refresh"]["skipped"] == 1
    assert {m for m, _ in requests} == {"HEAD"}

    # `makeanything caption` by another model, no retries: the one answer fails, its reason names the endpoint,
    # and with no request answered the command says so and exits 1
    vlm.mode, vlm.times = "500", 1
    (tmp_path / "cap.yaml").write_text(yaml.safe_dump({"caption": {"retries": 0}}))
    recaption = run_cli(
        ["caption", str(out), "--url", caption_url, "--model", "m2", "--config", str(tmp_path / "cap.yaml")]
    )
    assert recaption.returncode == 1 and "no caption request succeeded" in recaption.stderr
    caption_report = json.loads((out / "caption-report.json").read_text())["caption"]
    assert caption_report["endpoint"].startswith("http://***@127.0.0.1:")
    assert caption_report["captioned"] == report["totals"]["samples"] - 1
    (why,) = caption_report["fallbacks"].values()
    assert "HTTP 500" in why and "http://***@127.0.0.1:" in why

    printed = "".join(p.stdout + p.stderr for p in (first, again, recaption))
    assert secrets_in(out, printed) == []
    assert any(shown in p.read_text() for p in (out / "ledger").glob("*.json"))


def test_a_scheduler_address_with_credentials_is_not_printed(tutorials, tmp_path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        yaml.safe_dump({"sources": [{"path": str(tutorials["astronaut"][0]), "task": "portrait"}]})
    )
    done = run_cli(
        [
            "build",
            str(manifest),
            "--out",
            str(tmp_path / "out"),
            "--scheduler",
            f"tcp://d:{SOURCE_PW}@127.0.0.1:9",
        ]
    )
    assert done.returncode != 0 and "***@127.0.0.1:9" in done.stderr
    assert secrets_in(tmp_path / "out", done.stdout + done.stderr) == []


def test_an_evaluation_uses_the_judge_credentials_and_writes_them_nowhere(vlm, tmp_path):
    from PIL import Image

    rows = []
    for n, colour in enumerate([(200, 40, 40), (40, 200, 40)]):
        folder = tmp_path / "method" / f"f{n}"
        folder.mkdir(parents=True)
        for k in range(4):
            Image.new("RGB", (32, 32), tuple(c * k // 3 for c in colour)).save(folder / f"{k}.png")
        rows.append(json.dumps({"task": "emoji", "prompt": f"emoji {n}", "frames": f"f{n}"}))
    (tmp_path / "method" / "sequences.jsonl").write_text("\n".join(rows) + "\n")
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump({"judge": {"retries": 0}}))
    vlm.mode, vlm.times = "500", 1  # the first question fails: its error names the endpoint
    out = tmp_path / "out"
    judge_url = vlm.url.replace("http://", f"http://judge:{JUDGE_PW}@")
    done = run_cli(
        ["evaluate", f"m={tmp_path / 'method'}", "--out", str(out), "--no-clip", "--backbone", "pixel"]
        + ["--bootstrap", "100", "--config", str(tmp_path / "eval.yaml"), "--judge-url", judge_url]
    )
    assert done.returncode == 0, done.stderr
    judged = [json.loads(line)["judge"] for line in (out / "sequences.jsonl").read_text().splitlines()]
    assert "http://***@127.0.0.1:" in judged[0]["error"] and "HTTP 500" in judged[0]["error"]
    assert judged[1]["raw"]  # the server answered the second (not as a judge: recorded as malformed)
    assert (
        vlm.requests[-1]["headers"]["Authorization"]
        == "Basic " + base64.b64encode(f"judge:{JUDGE_PW}".encode()).decode()
    )
    assert secrets_in(out, done.stdout + done.stderr) == []
