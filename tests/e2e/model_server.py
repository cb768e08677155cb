"""A scripted stand-in for the Messages API on 127.0.0.1, for driving the real `claude` binary.

Each test gives a script: a list of turns, one per model request of the agent loop. A turn is a
list of content blocks made with ``text(...)`` and ``tool_use(...)``, or a function of the
request (a ``Request``) that returns such a list, for answers that depend on what the client sent.
The server answers in the streaming format the client asks for (server-sent events:
message_start, content_block_start/delta/stop, message_delta with the stop_reason, message_stop),
records every request body, and answers the client's side requests (count_tokens, and calls
without tools such as title generation) without using up the script. Use it as a context
manager so it shuts down with the test.
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Union

Block = dict
Turn = Union[list, Callable[["Request"], list]]
EXHAUSTED = "(scripted model: the script has no more turns)"


def text(value: str) -> Block:
    return {"type": "text", "text": value}


def tool_use(name: str, **tool_input) -> Block:
    return {"type": "tool_use", "name": name, "input": tool_input}


@dataclass
class Request:
    """One recorded request: the path and the parsed JSON body."""

    path: str
    body: dict
    scripted: bool = False  # True when a script turn answered it (the agent loop's requests)

    @property
    def messages(self) -> list:
        return self.body.get("messages") or []

    def message_text(self, message: dict) -> str:
        content = message.get("content")
        if isinstance(content, str):
            return content
        parts = []
        for block in content or []:
            if block.get("type") == "text":
                parts.append(block.get("text", ""))
            elif block.get("type") == "tool_result":
                inner = block.get("content")
                if isinstance(inner, str):
                    parts.append(inner)
                else:
                    parts.extend(b.get("text", "") for b in inner or [] if b.get("type") == "text")
            elif block.get("type") == "tool_use":
                parts.append(json.dumps(block.get("input"), ensure_ascii=False))
        return "\n".join(parts)

    def context_text(self) -> str:
        """Everything the model was given besides its own turns: prompts, injected context (the
        client sends some of it as system-role messages), tool results."""
        return "\n".join(self.message_text(m) for m in self.messages if m.get("role") != "assistant")

    def last_user_text(self) -> str:
        users = [m for m in self.messages if m.get("role") == "user"]
        return self.message_text(users[-1]) if users else ""

    def tool_results(self) -> list[dict]:
        return [b for m in self.messages if m.get("role") == "user" and isinstance(m.get("content"), list)
                for b in m["content"] if b.get("type") == "tool_result"]

    def last_tool_result(self) -> tuple[str, bool]:
        """The text of the newest tool result and whether the client marked it as an error."""
        block = self.tool_results()[-1]
        return self.message_text({"content": [block]}), bool(block.get("is_error"))

    def system_text(self) -> str:
        system = self.body.get("system")
        if isinstance(system, str):
            return system
        return "\n".join(b.get("text", "") for b in system or [])


@dataclass
class ScriptedModel:
    script: list[Turn]
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self):
        self._turns = list(self.script)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ----------------------------------------------------------------------
    def __enter__(self) -> "ScriptedModel":
        handler = type("Handler", (_Handler,), {"model": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # ---- answers ------------------------------------------------------------------------
    @property
    def scripted(self) -> list[Request]:
        return [r for r in self.requests if r.scripted]

    @property
    def turns_left(self) -> int:
        return len(self._turns)

    def answer(self, path: str, body: dict) -> list[Block] | dict:
        """The blocks for a messages request, or a JSON document for anything else."""
        with self._lock:
            request = Request(path, body)
            self.requests.append(request)
            if "count_tokens" in path:
                return {"input_tokens": max(1, len(json.dumps(body)) // 4)}
            if not body.get("tools"):  # title generation and other side calls: not the agent loop
                return [text("ok")]
            request.scripted = True
            turn = self._turns.pop(0) if self._turns else [text(EXHAUSTED)]
            blocks = turn(request) if callable(turn) else turn
            return [dict(b, id=f"toolu_{next(self._ids):04d}") if b["type"] == "tool_use" else b for b in blocks]


class _Handler(BaseHTTPRequestHandler):
    model: ScriptedModel
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        self._json({})

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            body = {}
        answer = self.model.answer(self.path, body)
        if isinstance(answer, dict):
            self._json(answer)
            return
        stop = "tool_use" if any(b["type"] == "tool_use" for b in answer) else "end_turn"
        message = {"id": f"msg_{len(self.model.requests):04d}", "type": "message", "role": "assistant",
                   "model": body.get("model", "scripted"), "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": 1, "output_tokens": 1}}
        if not body.get("stream"):
            self._json({**message, "content": answer, "stop_reason": stop})
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()
        self._event("message_start", {"type": "message_start", "message": {**message, "content": []}})
        for index, block in enumerate(answer):
            if block["type"] == "text":
                self._event("content_block_start", {"type": "content_block_start", "index": index,
                                                    "content_block": {"type": "text", "text": ""}})
                delta = {"type": "text_delta", "text": block["text"]}
            else:
                self._event("content_block_start", {"type": "content_block_start", "index": index,
                                                    "content_block": {"type": "tool_use", "id": block["id"],
                                                                      "name": block["name"], "input": {}}})
                delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
            self._event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
            self._event("content_block_stop", {"type": "content_block_stop", "index": index})
        self._event("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                      "usage": {"output_tokens": 1}})
        self._event("message_stop", {"type": "message_stop"})
        self.close_connection = True

    def _event(self, name: str, data: dict) -> None:
        self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        self.wfile.flush()

    def _json(self, doc: dict) -> None:
        out = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
