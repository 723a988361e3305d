"""The `vlm` fixture: the loopback chat-completions server (pipeline/caption/echo_server.py) for one test."""

from __future__ import annotations

import pytest

from pipeline.caption.echo_server import VLMServer, image_tag, start

__all__ = ["image_tag", "vlm"]


@pytest.fixture
def vlm():
    state = VLMServer()
    httpd = start(state)
    yield state
    httpd.shutdown()
    httpd.server_close()
