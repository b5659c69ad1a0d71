"""A real OpenAI-compatible chat-completions server on 127.0.0.1, standing in for a paid API in tests.

    with ChatServer(statuses=[429, 200]) as server:
        summarize_video(texts, base_url=server.base_url, ...)
        assert len(server.requests) == 2

Each request takes the next status from `statuses`; when they run out, `then` answers. A 200 answers
`reply(request_body)` as choices[0].message.content; any other status answers an OpenAI-style error.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = Callable[[dict[str, Any]], str]


@dataclass
class SeenRequest:
    path: str
    headers: dict[str, str]  # names in lower case
    body: dict[str, Any]

    @property
    def prompt(self) -> str:
        return "\n".join(str(m.get("content", "")) for m in self.body.get("messages", []))


class ChatServer:
    def __init__(self, statuses: Iterable[int] = (), *, then: int = 200, reply: Reply | str = "A summary.") -> None:
        self.statuses = list(statuses)
        self.then = then
        self.reply: Reply = reply if callable(reply) else (lambda _body, text=reply: text)
        self.requests: list[SeenRequest] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        # A short poll interval: shutdown() waits up to one interval, and tests start many servers.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> ChatServer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _next_status(self, request: SeenRequest) -> int:
        with self._lock:
            self.requests.append(request)
            return self.statuses.pop(0) if self.statuses else self.then

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                headers = {name.lower(): value for name, value in self.headers.items()}
                request = SeenRequest(self.path, headers, body)
                status = server._next_status(request)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    status = 404
                if status == 200:
                    self._send(200, completion(body, server.reply(body)))
                else:
                    self._send(status, {"error": {"message": f"scripted status {status}", "type": "test"}})

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, message_format: str, *args: Any) -> None:
                pass  # keeps test output clean

        return Handler


def completion(request: dict[str, Any], text: str) -> dict[str, Any]:
    prompt_words = sum(len(str(m.get("content", "")).split()) for m in request.get("messages", []))
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": request.get("model", "test-model"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_words,
            "completion_tokens": len(text.split()),
            "total_tokens": prompt_words + len(text.split()),
        },
    }
