"""A small OpenAI-compatible chat-completions server on loopback: try `makeanything caption` (or a build's
--caption-url) without a model, and the peer of the caption tests and bench.

    python -m pipeline.caption.echo_server            # prints its URL, e.g. http://127.0.0.1:8000/v1
    makeanything caption CORPUS --url http://127.0.0.1:8000/v1 --model echo

It checks the request shape (POST /v1/chat/completions, bearer key when one is expected, a system
message, a user message of one text part then JPEG data-URL images, temperature 0, response_format),
and answers JSON derived from the request: the process line names the process the prompt states, and
step k names a hash of image k, so a test can tell that every image was sent, in order. It is no model:
it checks our protocol. Modes make it slow, answer 429 with Retry-After, 500, malformed JSON, a wrong
number of steps, or hang past the client's timeout, for the first ``times`` requests or for all.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DATA_URL = re.compile(r"^data:image/jpeg;base64,(.+)$")
PROCESS = re.compile(r"steps of one (.+?) process")


def image_tag(jpeg: bytes) -> str:
    """What the server says about one image: a short hash of its bytes."""
    return hashlib.sha256(jpeg).hexdigest()[:8]


@dataclass
class VLMServer:
    """Counters and knobs of the running server (read and set by the test thread)."""

    url: str = ""
    mode: str = "ok"  # ok | 429 | 500 | malformed | wrong_length | hang
    times: int | None = None  # the mode applies to this many requests, then answers are ok; None: all
    latency: float = 0.0  # seconds every answer takes
    retry_after: str = "0"
    expect_key: str | None = None
    keep_bodies: bool = True  # False: `requests` holds empty records (a long benchmark's memory)
    requests: list[dict] = field(default_factory=list)  # every valid request's body and headers
    statuses: list[int] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    usage: dict = field(default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0})
    lock: threading.Lock = field(default_factory=threading.Lock)

    def settle(self, quiet: float = 0.5, limit: float = 10.0) -> int:
        """The request count once nothing is in flight and nothing new arrived for ``quiet`` s (a killed
        client's last request may still be on its way in)."""
        deadline, seen, since = time.time() + limit, -1, time.time()
        while time.time() < deadline:
            with self.lock:
                now, busy = len(self.requests), self.in_flight
            if now != seen or busy:
                seen, since = now, time.time()
            elif time.time() - since >= quiet:
                break
            time.sleep(0.05)
        return seen

    def _mode_now(self) -> str:
        with self.lock:
            if self.mode == "ok" or (self.times is not None and self.times <= 0):
                return "ok"
            if self.times is not None:
                self.times -= 1
            return self.mode


def check_request(path: str, headers, body: object, expect_key: str | None) -> tuple[list[str], list[bytes]]:
    """Problems with the request (empty when it is what the protocol wants) and its decoded images."""
    problems: list[str] = []
    if path != "/v1/chat/completions":
        problems.append(f"path {path}")
    if expect_key and headers.get("Authorization") != f"Bearer {expect_key}":
        problems.append("missing or wrong bearer key")
    if not isinstance(body, dict):
        return problems + ["body is not a JSON object"], []
    if not isinstance(body.get("model"), str) or body.get("temperature") != 0:
        problems.append("model missing or temperature not 0")
    fmt = body.get("response_format")
    if fmt is not None and fmt.get("type") not in ("json_object", "json_schema"):
        problems.append(f"response_format {fmt}")
    msgs = body.get("messages")
    if not (
        isinstance(msgs, list)
        and len(msgs) == 2
        and msgs[0].get("role") == "system"
        and isinstance(msgs[0].get("content"), str)
        and msgs[1].get("role") == "user"
    ):
        return problems + ["messages must be [system, user]"], []
    parts = msgs[1].get("content")
    if not (isinstance(parts, list) and parts and parts[0].get("type") == "text"):
        return problems + ["user content must start with a text part"], []
    images = []
    for p in parts[1:]:
        m = (
            DATA_URL.match((p.get("image_url") or {}).get("url", ""))
            if p.get("type") == "image_url"
            else None
        )
        data = base64.b64decode(m.group(1)) if m else b""
        if not data.startswith(b"\xff\xd8"):
            problems.append("an image part is not a JPEG data URL")
        images.append(data)
    return problems, images


def answer_for(text: str, images: list[bytes], steps: int) -> dict:
    """The answer the protocol asks for, derived from the request."""
    m = PROCESS.search(text)
    process = f"Step-by-step {m.group(1) if m else 'unknown'} process"
    tags = (
        [image_tag(i) for i in images] if len(images) == steps else [f"cell{k}" for k in range(1, steps + 1)]
    )
    return {"process": process, "steps": [f"Work on part {t}." for t in tags]}


def _steps_asked(text: str) -> int:
    m = re.search(r"exactly (\d+) strings", text)
    return int(m.group(1)) if m else 0


def make_handler(state: VLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        answering = False  # set once this request's answer starts going out

        def _send(self, status: int, payload: str, extra: dict | None = None) -> None:
            data = payload.encode()
            with state.lock:
                state.statuses.append(status)
                if self.answering:  # a request is in flight until its answer starts going out
                    state.in_flight -= 1
                    self.answering = False
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                pass

        def do_GET(self) -> None:  # noqa: N802 - /stats, for a benchmark running the server in its own process
            if not self.path.startswith("/stats"):
                return self._send(404, "{}")
            with state.lock:
                stats = {"requests": len(state.requests), "max_in_flight": state.max_in_flight}
                if "reset" in self.path:
                    state.max_in_flight = 0
            self._send(200, json.dumps(stats))

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with state.lock:
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            self.answering = True
            try:
                self._answer(raw)
            finally:
                with state.lock:
                    if self.answering:
                        state.in_flight -= 1
                        self.answering = False

        def _answer(self, raw: bytes) -> None:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            problems, images = check_request(self.path, self.headers, body, state.expect_key)
            if problems:
                return self._send(400, json.dumps({"error": {"message": "; ".join(problems)}}))
            with state.lock:
                state.requests.append(
                    {"headers": dict(self.headers), "body": body} if state.keep_bodies else {}
                )
            mode = state._mode_now()
            time.sleep(state.latency)
            if mode == "hang":
                time.sleep(3.0)
                return self._send(504, "{}")
            if mode == "429":
                return self._send(
                    429,
                    json.dumps({"error": {"message": "rate limited"}}),
                    {"Retry-After": state.retry_after},
                )
            if mode == "500":
                return self._send(500, json.dumps({"error": {"message": "internal error"}}))
            text = body["messages"][1]["content"][0]["text"]
            steps = _steps_asked(text)
            obj = answer_for(text, images, steps)
            if mode == "wrong_length":
                obj["steps"] = obj["steps"][:-1]
            content = '{"process": "unterminated' if mode == "malformed" else json.dumps(obj)
            usage = {
                "prompt_tokens": len(text) // 4 + 85 * len(images),
                "completion_tokens": len(content) // 4,
            }
            with state.lock:
                for k, v in usage.items():
                    state.usage[k] += v
            self._send(
                200,
                json.dumps(
                    {
                        "id": "chatcmpl-test",
                        "object": "chat.completion",
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": content},
                            }
                        ],
                        "usage": {**usage, "total_tokens": sum(usage.values())},
                    }
                ),
            )

        def log_message(self, *args) -> None:
            pass

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # many clients connect at once


def start(state: VLMServer, port: int = 0) -> ThreadingHTTPServer:
    """Serve on 127.0.0.1:``port`` (0: any free port) in a daemon thread; ``state.url`` is its base URL."""
    httpd = _Server(("127.0.0.1", port), make_handler(state))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{httpd.server_port}/v1"
    return httpd


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m pipeline.caption.echo_server",
        description="Answer chat-completions requests on loopback the way the caption protocol asks, without a "
        "model: step k names a hash of image k. Prints the base URL, serves until interrupted.",
    )
    ap.add_argument(
        "--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000; 0: any free port)"
    )
    ap.add_argument("--latency", type=float, default=0.0, help="seconds every answer takes (default 0)")
    args = ap.parse_args(argv)
    server = VLMServer(latency=args.latency, keep_bodies=False)
    httpd = start(server, args.port)
    print(server.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        httpd.shutdown()


if __name__ == "__main__":
    main()
