"""The VLM-judge client against a real HTTP server on loopback, started by the test.

This checks OUR protocol (the exact chat-completions request we send, retries, timeouts, cache,
replay, strict parsing of answers), not any model: the server returns recorded answers.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from evaluation.config import JudgeConfig
from evaluation.judge import Judge, Prompts

IMAGE_A, IMAGE_B = b"\xff\xd8jpeg-A", b"\xff\xd8jpeg-B"


class Recorder:
    """Serves queued (status, body, delay[, headers]) replies and records every request."""

    def __init__(self) -> None:
        self.replies: list[tuple] = []
        self.requests: list[dict] = []


@pytest.fixture
def server():
    rec = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            rec.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
            status, reply, delay, *headers = rec.replies.pop(0)
            time.sleep(delay)
            data = (reply if isinstance(reply, str) else json.dumps(reply)).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers[0] if headers else {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                pass

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    rec.url = f"http://127.0.0.1:{httpd.server_port}/v1"
    yield rec
    httpd.shutdown()
    httpd.server_close()


def answer(content: str) -> dict:
    return {
        "id": "x",
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
    }


def make_judge(server, tmp_path, **kw) -> tuple[Judge, list[float]]:
    sleeps: list[float] = []
    cfg = JudgeConfig(
        url=kw.pop("url", server.url),
        model="judge-model",
        api_key_env="TEST_JUDGE_KEY",
        timeout_s=kw.pop("timeout_s", 5),
        retries=kw.pop("retries", 2),
        backoff_s=0.5,
        **kw,
    )
    return Judge(cfg, tmp_path / "cache", sleep=sleeps.append), sleeps


def test_score_request_is_exactly_the_chat_completions_protocol(server, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_JUDGE_KEY", "sk-test")
    server.replies.append(
        (200, answer('{"alignment": 4, "coherence": 5, "usability": 3, "reason": "ok"}'), 0)
    )
    judge, _ = make_judge(server, tmp_path)
    v = judge.score(IMAGE_A, "Portrait", "a girl", 9)
    assert v.ok and v.value == {"alignment": 4, "coherence": 5, "usability": 3, "reason": "ok"}
    assert not v.cached
    (req,) = server.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == "Bearer sk-test"
    assert req["headers"]["Content-Type"] == "application/json"
    prompts = Prompts("judge-v1")
    user = prompts.score["user"].format(task="Portrait", prompt="a girl", frames=9)
    assert req["body"] == {
        "model": "judge-model",
        "temperature": 0,
        "max_tokens": 300,
        "messages": [
            {"role": "system", "content": prompts.score["system"]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": user},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(IMAGE_A).decode()},
                    },
                ],
            },
        ],
    }
    assert '"a girl"' in user and "9 frames" in user and "{" in user  # the template was filled, braces kept


def test_cache_answers_repeats_and_replay_needs_no_server(server, tmp_path, monkeypatch):
    monkeypatch.delenv("TEST_JUDGE_KEY", raising=False)
    server.replies.append((200, answer('{"alignment": 2, "coherence": 2, "usability": 1}'), 0))
    judge, _ = make_judge(server, tmp_path)
    first = judge.score(IMAGE_A, "Portrait", "a girl", 9)
    assert "Authorization" not in server.requests[0]["headers"]  # no key in the env: no header
    again = judge.score(IMAGE_A, "Portrait", "a girl", 9)
    assert again.cached and again.value == first.value and len(server.requests) == 1

    replay_cfg = JudgeConfig(url=None, model="judge-model", replay_only=True)
    replay = Judge(replay_cfg, tmp_path / "cache")
    assert replay.score(IMAGE_A, "Portrait", "a girl", 9).value == first.value
    miss = replay.score(IMAGE_B, "Portrait", "a girl", 9)  # another image: another key
    assert not miss.ok and "replay-only" in miss.error
    other_model = Judge(JudgeConfig(url=None, model="other", replay_only=True), tmp_path / "cache")
    assert not other_model.score(IMAGE_A, "Portrait", "a girl", 9).ok
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "content, problem",
    [
        ("The sequence is great, 5/5!", "malformed answer"),
        ('{"alignment": 6, "coherence": 5, "usability": 3}', "alignment"),
        ('{"alignment": 4.5, "coherence": 5, "usability": 3}', "alignment"),
        ('{"alignment": 4, "coherence": 5}', "usability"),
    ],
)
def test_malformed_answers_are_recorded_never_guessed(server, tmp_path, content, problem):
    server.replies.append((200, answer(content), 0))
    judge, _ = make_judge(server, tmp_path)
    v = judge.score(IMAGE_A, "Portrait", "a girl", 9)
    assert not v.ok and v.value is None and v.raw == content and problem in v.error


def test_fenced_json_is_accepted(server, tmp_path):
    server.replies.append((200, answer('```json\n{"better": 2}\n```'), 0))
    judge, _ = make_judge(server, tmp_path)
    assert judge.compare(IMAGE_A, IMAGE_B, "Portrait", "a girl").value == {"better": 2}
    content = server.requests[0]["body"]["messages"][1]["content"]
    assert [c["type"] for c in content] == ["text", "image_url", "image_url"]
    assert content[1]["image_url"]["url"].endswith(base64.b64encode(IMAGE_A).decode())  # first = first


def test_server_errors_are_retried_with_backoff_client_errors_are_not(server, tmp_path):
    server.replies += [
        (500, "boom", 0),
        (429, "slow down", 0),
        (200, answer('{"alignment": 3, "coherence": 3, "usability": 3}'), 0),
    ]
    judge, sleeps = make_judge(server, tmp_path)
    assert judge.score(IMAGE_A, "Portrait", "a girl", 9).ok
    assert len(server.requests) == 3 and sleeps == [0.5, 1.0]

    server.replies.append((400, '{"error": "bad image"}', 0))
    v = judge.score(IMAGE_B, "Portrait", "a girl", 9)
    assert not v.ok and "HTTP 400" in v.error and len(server.requests) == 4


def test_timeouts_give_up_after_the_configured_retries(server, tmp_path):
    server.replies += [(200, answer("{}"), 1.0)] * 2
    judge, sleeps = make_judge(server, tmp_path, timeout_s=0.2, retries=1)
    v = judge.score(IMAGE_A, "Portrait", "a girl", 9)
    assert not v.ok and "failed after 2 attempts" in v.error and v.raw is None
    assert len(server.requests) == 2 and sleeps == [0.5]
    assert not any((tmp_path / "cache").rglob("*.json"))  # nothing cached from a failure


def test_a_429_waits_as_long_as_the_servers_retry_after_says(server, tmp_path):
    server.replies += [
        (429, "slow down", 0, {"Retry-After": "7"}),
        (429, "slow down", 0, {"Retry-After": "100000"}),  # capped
        (200, answer('{"alignment": 3, "coherence": 3, "usability": 3}'), 0),
    ]
    judge, sleeps = make_judge(server, tmp_path)
    assert judge.score(IMAGE_A, "Portrait", "a girl", 9).ok
    assert sleeps == [7.0, 120.0] and len(server.requests) == 3  # not the 0.5 s, 1 s backoff
    assert judge.client.counts["retries_429"] == 2


def test_the_request_budget_stops_asking_and_cached_answers_still_count(server, tmp_path):
    server.replies += [
        (500, "boom", 0),
        (200, answer('{"alignment": 3, "coherence": 3, "usability": 3}'), 0),
        (500, "boom", 0),
    ]
    judge, _ = make_judge(server, tmp_path, budget=3)
    assert judge.score(IMAGE_A, "Portrait", "a girl", 9).ok  # two requests: the retry counts
    spent = judge.score(IMAGE_B, "Portrait", "a girl", 9)  # a third, then its retry is over budget
    assert not spent.ok and "budget of 3 requests spent" in spent.error and spent.raw is None
    assert not judge.compare(IMAGE_A, IMAGE_B, "Portrait", "a girl").ok  # not asked at all
    assert judge.score(IMAGE_A, "Portrait", "a girl", 9).cached  # the cache needs no budget
    assert len(server.requests) == 3 and judge.client.counts["requests"] == 3


def test_credentials_in_the_judge_url_are_sent_as_basic_auth_and_never_shown(server, tmp_path, monkeypatch):
    monkeypatch.delenv("TEST_JUDGE_KEY", raising=False)
    url = server.url.replace("http://", "http://judge:pw-9d2c41@")
    server.replies += [
        (200, answer('{"alignment": 3, "coherence": 3, "usability": 3}'), 0),
        (401, '{"error": "who are you"}', 0),
        (200, answer('{"better": 1}'), 0),
    ]
    judge, _ = make_judge(server, tmp_path, url=url)
    assert judge.score(IMAGE_A, "Portrait", "a girl", 9).ok
    assert server.requests[0]["path"] == "/v1/chat/completions"
    assert (
        server.requests[0]["headers"]["Authorization"]
        == "Basic " + base64.b64encode(b"judge:pw-9d2c41").decode()
    )
    refused = judge.score(IMAGE_B, "Portrait", "a girl", 9)
    assert "HTTP 401" in refused.error and "http://***@127.0.0.1:" in refused.error
    assert "pw-9d2c41" not in refused.error
    monkeypatch.setenv("TEST_JUDGE_KEY", "sk-test")  # an API key wins over the URL's credentials
    assert judge.compare(IMAGE_A, IMAGE_B, "Portrait", "a girl").ok
    assert server.requests[2]["headers"]["Authorization"] == "Bearer sk-test"


def test_side_by_side_in_both_orders_reports_agreement(server, tmp_path):
    from evaluation.report import pair_table
    from evaluation.run import compare_pairs
    from pipeline.taxonomy import Taxonomy

    (tmp_path / "a.jpg").write_bytes(IMAGE_A)
    (tmp_path / "b.jpg").write_bytes(IMAGE_B)
    images = {
        ("emoji", "p1"): {"a": tmp_path / "a.jpg", "b": tmp_path / "b.jpg"},
        ("emoji", "p2"): {"b": tmp_path / "b.jpg", "a": tmp_path / "a.jpg"},
    }
    # p1: 'a' wins in both orders; p2 (other cache keys: other prompt): the judge always says "first"
    server.replies += [
        (200, answer('{"better": 1}'), 0),
        (200, answer('{"better": 2}'), 0),
        (200, answer('{"better": 1}'), 0),
        (200, answer('{"better": 1}'), 0),
    ]
    judge, _ = make_judge(server, tmp_path)
    pairs = compare_pairs(judge, images, Taxonomy.load())
    assert [(p["prompt"], p["consistent"], p["winner"]) for p in pairs] == [
        ("p1", True, "a"),
        ("p2", False, None),
    ]
    firsts = [r["body"]["messages"][1]["content"][1]["image_url"]["url"][-8:] for r in server.requests]
    assert firsts[0] != firsts[1] and firsts[2] != firsts[3]  # each pair was really asked in both orders
    (row,) = pair_table(pairs).rows
    assert row == ["a vs b", "2", "1/2 (50%)", "1", "0", "1", "3/4"]
