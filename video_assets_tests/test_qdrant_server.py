"""QDRANT_URL: the client's timeouts and retries against a real HTTP server on loopback.

No Qdrant server binary installs from a package registry here, so the engine contract itself runs
against qdrant-client's local mode (test_vector_index_contract.py). What only a server exercises —
a server that is down, overloaded or refusing — is tested against a loopback HTTP server that
answers Qdrant's REST routes with the statuses a real one sends.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from video_assets.store.qdrant_client_index import ClientVectorIndex
from video_assets.store.vector_index import VectorIndexError


@contextmanager
def qdrant_like(statuses: list[int]) -> Iterator[list[str]]:
    """Answers each request with the next status (then 200); a 200 to `/collections/<c>/exists` says no."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path == "/":  # the client's version check when it is made: answered, not counted
                return self._send(200, {"title": "qdrant - vector search engine", "version": "1.16.0"})
            seen.append(self.path)
            status = statuses.pop(0) if statuses else 200
            body = (
                {"result": {"exists": False}, "status": "ok", "time": 0.0}
                if status == 200
                else {"status": {"error": f"test server says {status}"}, "time": 0.0}
            )
            self._send(status, body)

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield seen, f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[misc]
    finally:
        server.shutdown()
        server.server_close()


def test_an_overloaded_server_is_retried_until_it_answers() -> None:
    with qdrant_like([503, 502]) as (seen, url):
        index = ClientVectorIndex(url=url, collection="videos")
        index.client._base_delay = 0.01  # the real schedule is 0.5, 1, 2 s
        assert index.count() == 0  # `exists` answered "no collection" on the third try
    assert seen == ["/collections/videos/exists"] * 3


def test_a_server_down_for_longer_is_one_clear_error_naming_it() -> None:
    with qdrant_like([503] * 10) as (seen, url):
        index = ClientVectorIndex(url=url, collection="videos")
        index.client._base_delay = 0.01
        with pytest.raises(VectorIndexError, match=rf"Qdrant at {url} failed collection_exists 4 times: HTTP 503"):
            index.count()
    assert len(seen) == 4


def test_a_refused_request_is_not_retried() -> None:
    with qdrant_like([403]) as (seen, url):
        index = ClientVectorIndex(url=url, collection="videos")
        with pytest.raises(Exception, match="403"):
            index.count()
    assert len(seen) == 1


def test_nothing_listening_is_retried_then_named() -> None:
    with qdrant_like([]) as (_, url):
        pass  # the port is closed again: connections are refused
    index = ClientVectorIndex(url=url, collection="videos")
    index.client._base_delay = 0.01
    with pytest.raises(VectorIndexError, match=rf"Qdrant at {url} failed collection_exists 4 times"):
        index.count()
