"""A scriptable fake of the model APIs, served over real HTTP on 127.0.0.1.

Both SDKs talk through ``httpx2`` (a fork of httpx), which transport-mocking libraries such as
respx cannot intercept, so the fake is a real aiohttp server that the real SDKs reach through
their ``base_url``. One server speaks three APIs under distinct path prefixes:

=============  ==========================================  ===============================
API            endpoint                                    give the client
=============  ==========================================  ===============================
``anthropic``  ``{base}/anthropic/v1/messages``            ``anthropic_base_url``
``openai``     ``{base}/openai/v1/chat/completions``       ``openai_base_url``
``world``      ``{base}/world/v1/chat/completions``        ``world_url`` (+ ``/v1/...``)
=============  ==========================================  ===============================

The ``world`` interface is upstream's ``cli`` participant: it receives
``{"messages": [{"role": "user", "content": str}]}`` and answers, never streaming,
``{"choices": [{"message": {"role": "assistant", "content": str}}]}``.

Scripting is per *model key*: the request's ``model`` field, ``"world"`` for the world
interface, or ``"*"`` for any model. Each key has a FIFO queue of replies, errors and
connection drops; an item queued for the exact model wins over one queued for ``"*"``.
When nothing is queued the reply comes from the responder set with :meth:`set_responder`,
or else is the deterministic ``f"{model} reply {n}"``, where ``n`` counts the requests
received so far for that model key (1-based, this one included, across all three APIs).

Usage numbers, unless queued explicitly:

* input tokens  = (characters of the text of every message, plus the Anthropic ``system``
  field) // 4 + 1;
* output tokens = number of whitespace-separated words of the reply (and of its thinking);
* Anthropic's prompt cache splits the input into read, written and uncached tokens by the rules
  in :mod:`tests.fakes.anthropic_cache` (a clock can be injected through ``anthropic_cache``);
* OpenAI's ``prompt_tokens_details.cached_tokens`` only when queued (``cached_tokens=``).

An Anthropic reply can carry thinking (streamed as a thinking block before the text) and end
with another ``stop_reason`` (``"max_tokens"`` for a reply cut short).

Streamed replies are split by characters into ``chunk_count`` text deltas (fewer when the text
is shorter than that; none for an empty reply) whose concatenation is exactly the reply.

Run as its own process for benchmarks::

    python -m tests.fakes.model_server --port 0 --chunks 40 --chunk-delay 0.05 --words 400

prints ``READY http://127.0.0.1:PORT`` and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
import ssl
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Final, Literal

from aiohttp import web

from backrooms_engine.lifecycle import StartsOnEntry

from .anthropic_cache import AnthropicCache, CacheRequestError

Api = Literal["anthropic", "openai", "world"]
Responder = Callable[[str, dict[str, Any]], str]
"""``(api, request_body) -> reply text``; consulted when a model's queue is empty."""

ANY_MODEL: Final = "*"
WORLD_MODEL: Final = "world"
SSE_CONTENT_TYPE: Final = "text/event-stream"
JSON_CONTENT_TYPE: Final = "application/json"

_ROUTES: Final[dict[Api, str]] = {
    "anthropic": "/anthropic/v1/messages",
    "openai": "/openai/v1/chat/completions",
    "world": "/world/v1/chat/completions",
}

# Conversation histories grow every turn; aiohttp's 1 MiB default body limit would turn a long
# relay run into spurious 413s that no real API would send.
_MAX_BODY_BYTES: Final = 64 * 1024 * 1024

_ANTHROPIC_ERROR_TYPES: Final[dict[int, str]] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

# OpenAI reports (type, code); the code is what callers branch on (e.g. "model_not_found").
_OPENAI_ERROR_KINDS: Final[dict[int, tuple[str, str | None]]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


# --------------------------------------------------------------------------- recorded requests


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it."""

    api: str
    path: str
    headers: dict[str, str] = field(hash=False)  # lower-case names
    body: dict[str, Any] = field(hash=False)  # parsed JSON; {} when the body was not an object

    @property
    def model(self) -> str:
        """The scripting key: ``"world"`` for the world interface, else the body's ``model``."""
        if self.api == "world":
            return WORLD_MODEL
        model = self.body.get("model")
        return model if isinstance(model, str) else ""

    @property
    def messages(self) -> list[dict[str, Any]]:
        messages = self.body.get("messages")
        return messages if isinstance(messages, list) else []

    @property
    def system(self) -> Any:
        """The Anthropic ``system`` field (str or blocks), or None (always None for the others)."""
        return self.body.get("system") if self.api == "anthropic" else None

    @property
    def stream(self) -> bool:
        return self.body.get("stream") is True


# --------------------------------------------------------------------------- scripted actions


@dataclass(frozen=True)
class _Reply:
    text: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    chunk_delay: float | None = None  # None: the server's
    thinking: str | None = None  # Anthropic: a thinking block before the text
    stop_reason: str = "end_turn"
    cache_read_tokens: int | None = None  # with input_tokens: Anthropic's counts as queued
    cache_write_tokens: int | None = None
    cached_tokens: int | None = None  # OpenAI's prompt_tokens_details.cached_tokens


@dataclass(frozen=True)
class _Error:
    status: int
    message: str | None = None  # None: a default naming the status, API and model
    retry_after: float | None = None
    after_chunks: int | None = None  # None: instead of a response; N: mid-stream, after N deltas


@dataclass(frozen=True)
class _Drop:
    after_chunks: int


_Action = _Reply | _Error | _Drop


@dataclass(frozen=True)
class _Usage:
    input_tokens: int  # Anthropic: the uncached remainder; OpenAI: every prompt token
    output_tokens: int
    cache_read: int = 0
    cache_write: int = 0
    cache_write_1h: int = 0  # the part of cache_write with the one-hour lifetime
    openai_cached: int | None = None
    thinking: str | None = None
    stop_reason: str = "end_turn"


@dataclass(frozen=True)
class _Exchange:
    """What a handler knows about the request it is answering."""

    request: web.Request
    record: RecordedRequest
    seq: int  # numbers the response ids, so a failing test can match logs to requests

    @property
    def streaming(self) -> bool:
        # The world interface is upstream's plain JSON endpoint: it never streams.
        return self.record.stream and self.record.api != "world"


@dataclass(frozen=True)
class _Frames:
    """A whole SSE stream, split where it may be interrupted."""

    head: list[bytes]
    deltas: list[bytes]  # one frame per text chunk
    tail: list[bytes]


# --------------------------------------------------------------------------- pure helpers


def split_chunks(text: str, count: int) -> list[str]:
    """Split ``text`` into at most ``count`` non-empty pieces that concatenate back to it.

    Pieces differ in length by at most one character. Python strings index by code point, so no
    character is ever cut in half (grapheme clusters may be, as real token streams do too).
    """
    if not text:
        return []
    pieces = max(1, min(count, len(text)))
    size, extra = divmod(len(text), pieces)
    out: list[str] = []
    start = 0
    for i in range(pieces):
        end = start + size + (1 if i < extra else 0)
        out.append(text[start:end])
        start = end
    return out


def _text_of(content: Any) -> str:
    """The text of a message content: a string, or a list of blocks with ``text`` fields."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            block["text"]
            for block in content
            if isinstance(block, dict) and isinstance(block.get("text"), str)
        )
    return ""


def estimate_input_tokens(body: Mapping[str, Any]) -> int:
    """Deterministic stand-in for a tokenizer: characters of all prompt text // 4 + 1."""
    chars = len(_text_of(body.get("system")))
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, dict):
            chars += len(_text_of(message.get("content")))
    return chars // 4 + 1


def count_output_tokens(text: str) -> int:
    return len(text.split())


def _status_phrase(status: int) -> str:
    if status == 529:  # Anthropic's own code, unknown to HTTPStatus
        return "Overloaded"
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _error_message(error: _Error, api: str, model: str) -> str:
    if error.message is not None:
        return error.message
    return f"{_status_phrase(error.status)} (fake {api} error for model {model!r})"


def anthropic_error_body(status: int, message: str) -> dict[str, Any]:
    default = "api_error" if status >= 500 else "invalid_request_error"
    kind = _ANTHROPIC_ERROR_TYPES.get(status, default)
    return {"type": "error", "error": {"type": kind, "message": message}}


def openai_error_body(status: int, message: str) -> dict[str, Any]:
    default = ("server_error", None) if status >= 500 else ("invalid_request_error", None)
    kind, code = _OPENAI_ERROR_KINDS.get(status, default)
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _error_payload(exchange: _Exchange, error: _Error) -> dict[str, Any]:
    api, model = exchange.record.api, exchange.record.model
    message = _error_message(error, api, model)
    if api == "anthropic":
        return anthropic_error_body(error.status, message)
    # The world interface is OpenAI-like, so it fails the OpenAI way too.
    return openai_error_body(error.status, message)


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def _sse(event: str | None, data: Mapping[str, Any] | str) -> bytes:
    """One SSE frame. JSON is ASCII-escaped so no payload byte can be mistaken for a newline."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {payload}\n\n".encode()


# --------------------------------------------------------------------------- Anthropic shapes


def _anthropic_usage(usage: _Usage, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": usage.cache_write,
        "cache_read_input_tokens": usage.cache_read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": usage.cache_write - usage.cache_write_1h,
            "ephemeral_1h_input_tokens": usage.cache_write_1h,
        },
        "output_tokens": output_tokens,
    }


def _signature(msg_id: str) -> str:
    return f"sig_fake_{msg_id}"


def anthropic_message(msg_id: str, model: str, text: str, usage: _Usage) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    if usage.thinking is not None:
        thought = {"type": "thinking", "thinking": usage.thinking, "signature": _signature(msg_id)}
        content.insert(0, thought)
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": usage.stop_reason,
        "stop_sequence": None,
        "usage": _anthropic_usage(usage, usage.output_tokens),
    }


def _block_frames(
    index: int, block: dict[str, Any], deltas: Sequence[dict[str, Any]]
) -> list[bytes]:
    start = {"type": "content_block_start", "index": index, "content_block": block}
    frames = [_sse("content_block_start", start)]
    for delta in deltas:
        event = {"type": "content_block_delta", "index": index, "delta": delta}
        frames.append(_sse("content_block_delta", event))
    frames.append(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
    return frames


def _thinking_frames(msg_id: str, thinking: str) -> list[bytes]:
    """A thinking block as the API streams it: thinking deltas, then its signature."""
    deltas: list[dict[str, Any]] = [
        {"type": "thinking_delta", "thinking": piece} for piece in split_chunks(thinking, 3)
    ]
    deltas.append({"type": "signature_delta", "signature": _signature(msg_id)})
    return _block_frames(0, {"type": "thinking", "thinking": "", "signature": ""}, deltas)


def anthropic_frames(msg_id: str, model: str, pieces: Sequence[str], usage: _Usage) -> _Frames:
    """The event sequence of a streamed Messages reply, as the real API orders it."""
    start = {
        **anthropic_message(msg_id, model, "", usage),
        "content": [],
        "stop_reason": None,
        # The real API reports input tokens up front and a provisional output count of 1;
        # message_delta then carries the cumulative totals.
        "usage": _anthropic_usage(usage, 1),
    }
    thinking = [] if usage.thinking is None else _thinking_frames(msg_id, usage.thinking)
    text_index = 1 if thinking else 0
    head = [
        _sse("message_start", {"type": "message_start", "message": start}),
        *thinking,
        _sse(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": text_index,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        _sse("ping", {"type": "ping"}),
    ]
    deltas = [
        _sse(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": text_index,
                "delta": {"type": "text_delta", "text": p},
            },
        )
        for p in pieces
    ]
    final_usage = _anthropic_usage(usage, usage.output_tokens)
    del final_usage["cache_creation"]  # message_delta's usage has no breakdown
    tail = [
        _sse("content_block_stop", {"type": "content_block_stop", "index": text_index}),
        _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": usage.stop_reason, "stop_sequence": None},
                "usage": final_usage,
            },
        ),
        _sse("message_stop", {"type": "message_stop"}),
    ]
    return _Frames(head, deltas, tail)


# --------------------------------------------------------------------------- OpenAI shapes


def _openai_usage(usage: _Usage) -> dict[str, Any]:
    body: dict[str, Any] = {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }
    if usage.openai_cached is not None:  # a part of prompt_tokens, not beside it
        body["prompt_tokens_details"] = {"cached_tokens": usage.openai_cached, "audio_tokens": 0}
    return body


def _finish_reason(usage: _Usage) -> str:
    return "length" if usage.stop_reason == "max_tokens" else "stop"


def openai_completion(cmpl_id: str, model: str, text: str, usage: _Usage) -> dict[str, Any]:
    return {
        "id": cmpl_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "finish_reason": _finish_reason(usage),
                "logprobs": None,
            }
        ],
        "usage": _openai_usage(usage),
    }


def openai_frames(
    cmpl_id: str, model: str, pieces: Sequence[str], usage: _Usage, *, include_usage: bool
) -> _Frames:
    """Chunks of a streamed chat completion; the usage chunk only when the caller asked for it."""
    created = int(time.time())

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        body: dict[str, Any] = {
            "id": cmpl_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": choices,
        }
        if include_usage:  # the real API then sends "usage": null on every other chunk
            body["usage"] = None
        return _sse(None, {**body, **extra})

    def choice(delta: dict[str, Any], finish_reason: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]

    head = [chunk(choice({"role": "assistant", "content": ""}))]
    deltas = [chunk(choice({"content": p})) for p in pieces]
    tail = [chunk(choice({}, _finish_reason(usage)))]
    if include_usage:
        tail.append(chunk([], usage=_openai_usage(usage)))
    tail.append(_sse(None, "[DONE]"))
    return _Frames(head, deltas, tail)


def world_completion(text: str) -> dict[str, Any]:
    return {
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ]
    }


# --------------------------------------------------------------------------- the server


class FakeModelServer(StartsOnEntry):
    """Serves the Anthropic, OpenAI and world APIs on one loopback port; see the module doc."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        chunk_count: int = 5,
        chunk_delay: float = 0.0,
        first_byte_delay: float = 0.0,
        record_requests: bool = True,
        shutdown_timeout: float = 1.0,
        tls: ssl.SSLContext | None = None,
        anthropic_cache: AnthropicCache | None = None,
    ) -> None:
        self.anthropic_cache = anthropic_cache or AnthropicCache()
        self.host = host
        self.port = port
        self.chunk_count = chunk_count
        self.chunk_delay = chunk_delay
        self.first_byte_delay = first_byte_delay
        # Long benchmark runs turn this off so memory does not grow with every request.
        self.record_requests = record_requests
        self.requests: list[RecordedRequest] = []
        self._shutdown_timeout = shutdown_timeout
        self._queues: dict[str, deque[_Action]] = {}
        self._model_counts: Counter[str] = Counter()
        self._responder: Responder | None = None
        self._seq = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._tls = tls  # HTTPS with this server-side context

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application(client_max_size=_MAX_BODY_BYTES)
        for api, path in _ROUTES.items():
            app.router.add_post(path, self._handler_for(api))
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=self._shutdown_timeout
        )
        await runner.setup()
        await web.TCPSite(runner, self.host, self.port, ssl_context=self._tls).start()
        self._runner = runner
        self.port = runner.addresses[0][1]  # the real port when 0 asked for an ephemeral one
        self._base_url = f"{'https' if self._tls else 'http'}://{self.host}:{self.port}"

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # ----------------------------------------------------------------- addresses

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("FakeModelServer is not started")
        return self._base_url

    @property
    def anthropic_base_url(self) -> str:
        return f"{self.base_url}/anthropic"

    @property
    def openai_base_url(self) -> str:
        return f"{self.base_url}/openai/v1"

    @property
    def world_url(self) -> str:
        return f"{self.base_url}/world"

    # ----------------------------------------------------------------- scripting

    def queue_reply(
        self,
        model: str,
        text: str,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        chunk_delay: float | None = None,
        thinking: str | None = None,
        stop_reason: str = "end_turn",
        cache_read_tokens: int | None = None,
        cache_write_tokens: int | None = None,
        cached_tokens: int | None = None,
    ) -> None:
        """Answer the next request for ``model`` with ``text`` (usage derived unless given),
        its chunks ``chunk_delay`` apart when given, else as the server's setting says.

        Anthropic: ``thinking`` comes first as a thinking block; ``stop_reason`` ends the reply;
        with ``input_tokens`` given, the cache counts are as given (0 unless given) instead of
        the cache's. OpenAI: ``cached_tokens`` is reported as ``prompt_tokens_details``."""
        reply = _Reply(
            text, input_tokens, output_tokens, chunk_delay, thinking, stop_reason,
            cache_read_tokens, cache_write_tokens, cached_tokens,
        )  # fmt: skip
        self._queue(model, reply)

    def queue_error(
        self,
        model: str,
        status: int,
        *,
        retry_after: float | None = None,
        message: str | None = None,
        after_chunks: int | None = None,
    ) -> None:
        """Fail the next request for ``model`` with an API-shaped error body.

        ``after_chunks=None`` answers with HTTP ``status`` (plus ``retry-after`` when given).
        ``after_chunks=N`` on a streamed request starts a 200 stream and sends the error as an
        in-stream event after N text chunks, as the real APIs do when they fail mid-reply
        (non-streamed requests get the plain HTTP error).
        """
        self._queue(model, _Error(status, message, retry_after, after_chunks))

    def queue_drop(self, model: str, *, after_chunks: int = 0) -> None:
        """Cut the connection of the next request for ``model`` after N streamed text chunks.

        A non-streamed request has its connection closed before any response byte.
        """
        self._queue(model, _Drop(after_chunks))

    def set_responder(self, fn: Responder | None) -> None:
        """Produce replies with ``fn(api, body)`` when a model's queue is empty (None: default)."""
        self._responder = fn

    def requests_for(self, api: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.api == api]

    def _queue(self, model: str, action: _Action) -> None:
        self._queues.setdefault(model, deque()).append(action)

    def _next_action(self, record: RecordedRequest) -> _Action:
        for key in (record.model, ANY_MODEL):
            queue = self._queues.get(key)
            if queue:
                return queue.popleft()
        return _Reply(self._unscripted_text(record))

    def _unscripted_text(self, record: RecordedRequest) -> str:
        if self._responder is not None:
            return self._responder(record.api, record.body)
        return f"{record.model} reply {self._model_counts[record.model]}"

    # ----------------------------------------------------------------- request handling

    def _handler_for(self, api: Api) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._handle(request, api)

        return handle

    async def _handle(self, request: web.Request, api: Api) -> web.StreamResponse:
        body = await _read_json_object(request)
        exchange = _Exchange(request, self._record(request, api, body or {}), next(self._seq))
        if self.first_byte_delay > 0:
            await asyncio.sleep(self.first_byte_delay)
        if body is None:
            return self._error_response(exchange, _Error(400, "request body must be a JSON object"))
        if api == "anthropic":
            try:
                self.anthropic_cache.check(body)
            except CacheRequestError as exc:
                return self._error_response(exchange, _Error(400, str(exc)))
        return await self._respond(exchange, self._next_action(exchange.record))

    def _record(self, request: web.Request, api: Api, body: dict[str, Any]) -> RecordedRequest:
        headers = {name.lower(): value for name, value in request.headers.items()}
        record = RecordedRequest(api, request.path, headers, body)
        # Counted even when requests are not kept: default replies are numbered from it.
        self._model_counts[record.model] += 1
        if self.record_requests:
            self.requests.append(record)
        return record

    async def _respond(self, exchange: _Exchange, action: _Action) -> web.StreamResponse:
        if isinstance(action, _Error) and (action.after_chunks is None or not exchange.streaming):
            return self._error_response(exchange, action)
        if isinstance(action, _Drop) and not exchange.streaming:
            _cut_connection(exchange.request)
            return web.Response()  # never reaches the client: the transport is closing
        # A drop or mid-stream error interrupts what would otherwise have been the default reply.
        if isinstance(action, _Reply):
            reply = action
        else:
            reply = _Reply(self._unscripted_text(exchange.record))
        usage = _usage_for(exchange.record, reply, self.anthropic_cache)
        if not exchange.streaming:
            return self._json_response(exchange, self._full_body(exchange, reply.text, usage))
        interrupt = None if isinstance(action, _Reply) else action
        delay = self.chunk_delay if reply.chunk_delay is None else reply.chunk_delay
        return await self._stream(exchange, reply.text, usage, interrupt, delay)

    def _full_body(self, exchange: _Exchange, text: str, usage: _Usage) -> dict[str, Any]:
        api, model, seq = exchange.record.api, exchange.record.model, exchange.seq
        if api == "anthropic":
            return anthropic_message(f"msg_fake_{seq}", model, text, usage)
        if api == "openai":
            return openai_completion(f"chatcmpl-fake-{seq}", model, text, usage)
        return world_completion(text)

    def _frames(self, exchange: _Exchange, text: str, usage: _Usage) -> _Frames:
        record, seq = exchange.record, exchange.seq
        pieces = split_chunks(text, self.chunk_count)
        if record.api == "anthropic":
            return anthropic_frames(f"msg_fake_{seq}", record.model, pieces, usage)
        options = record.body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        return openai_frames(
            f"chatcmpl-fake-{seq}", record.model, pieces, usage, include_usage=include_usage
        )

    # ----------------------------------------------------------------- responses

    def _headers(self, exchange: _Exchange, content_type: str) -> dict[str, str]:
        # Anthropic names its request id "request-id", OpenAI "x-request-id": send both.
        request_id = f"req_fake_{exchange.seq}"
        return {"Content-Type": content_type, "request-id": request_id, "x-request-id": request_id}

    def _json_response(
        self, exchange: _Exchange, body: dict[str, Any], status: int = 200
    ) -> web.Response:
        return web.Response(
            status=status,
            reason=_status_phrase(status),
            text=json.dumps(body),
            headers=self._headers(exchange, JSON_CONTENT_TYPE),
        )

    def _error_response(self, exchange: _Exchange, error: _Error) -> web.Response:
        response = self._json_response(exchange, _error_payload(exchange, error), error.status)
        if error.retry_after is not None:
            response.headers["retry-after"] = _format_seconds(error.retry_after)
        return response

    def _error_frame(self, exchange: _Exchange, error: _Error) -> bytes:
        # Anthropic names the event; OpenAI sends a bare data line holding an "error" object.
        event = "error" if exchange.record.api == "anthropic" else None
        return _sse(event, _error_payload(exchange, error))

    async def _stream(
        self,
        exchange: _Exchange,
        text: str,
        usage: _Usage,
        interrupt: _Error | _Drop | None,
        delay: float,
    ) -> web.StreamResponse:
        frames = self._frames(exchange, text, usage)
        response = web.StreamResponse(headers=self._headers(exchange, SSE_CONTENT_TYPE))
        response.headers["Cache-Control"] = "no-cache"
        await response.prepare(exchange.request)
        try:
            await _write_all(response, frames.head)
            limit = None if interrupt is None else interrupt.after_chunks
            await _write_deltas(response, frames.deltas, limit, delay)
            if isinstance(interrupt, _Drop):
                _cut_connection(exchange.request)
                return response
            ending = frames.tail if interrupt is None else [self._error_frame(exchange, interrupt)]
            await _write_all(response, ending)
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client hung up first (e.g. a test stopped reading): nothing left to send
        return response


async def _write_deltas(
    response: web.StreamResponse, deltas: Sequence[bytes], limit: int | None, delay: float
) -> None:
    # On a fixed schedule from the first delta, as a model generates: time this server spends
    # writing (or losing to a busy loop) does not stretch the reply.
    loop = asyncio.get_running_loop()
    start = loop.time()
    for index, frame in enumerate(deltas[:limit]):
        if index and delay > 0:
            await asyncio.sleep(max(0.0, start + index * delay - loop.time()))
        await response.write(frame)


async def _write_all(response: web.StreamResponse, frames: Sequence[bytes]) -> None:
    for frame in frames:
        await response.write(frame)


async def _read_json_object(request: web.Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.read() or b"null")
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _usage_for(record: RecordedRequest, reply: _Reply, cache: AnthropicCache) -> _Usage:
    output_tokens = reply.output_tokens
    if output_tokens is None:
        output_tokens = count_output_tokens(f"{reply.text} {reply.thinking or ''}")
    shape = {"thinking": reply.thinking, "stop_reason": reply.stop_reason}
    if reply.input_tokens is not None:
        read, write = reply.cache_read_tokens or 0, reply.cache_write_tokens or 0
        return _Usage(
            reply.input_tokens, output_tokens, read, write, 0, reply.cached_tokens, **shape
        )
    total = estimate_input_tokens(record.body)
    if record.api != "anthropic":
        return _Usage(total, output_tokens, openai_cached=reply.cached_tokens, **shape)
    split = cache.account(record.body, total)
    return _Usage(
        split.input_tokens,
        output_tokens,
        split.cache_read_input_tokens,
        split.cache_creation_input_tokens,
        split.ephemeral_1h_input_tokens,
        **shape,
    )


def _cut_connection(request: web.Request) -> None:
    """Close the socket mid-response: the client sees the body end early, as on a network cut.

    ``close`` (not ``abort``) first flushes what was already written, so the client receives
    exactly the chunks sent before the cut; aiohttp then refuses further writes.
    """
    transport = request.transport
    if transport is not None:
        transport.close()


# --------------------------------------------------------------------------- benchmark process

_FILLER_WORDS: Final = (
    "the hum of fluorescent lights fills an endless corridor of yellow wallpaper "
    "and damp carpet where every door opens onto another room just like this one"
).split()


def filler_responder(words: int) -> Responder:
    """Replies of exactly ``words`` words (at least the 3-word ``"{model} reply {n}"`` head)."""
    counts: Counter[str] = Counter()

    def respond(api: str, body: dict[str, Any]) -> str:
        model = WORLD_MODEL if api == "world" else str(body.get("model", ""))
        counts[model] += 1
        head = [model or "model", "reply", str(counts[model])]
        filler = itertools.islice(itertools.cycle(_FILLER_WORDS), max(0, words - len(head)))
        return " ".join([*head, *filler])

    return respond


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve the fake model APIs until SIGTERM/SIGINT.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--chunks", type=int, default=40, help="text deltas per streamed reply")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between deltas")
    parser.add_argument("--first-byte-delay", type=float, default=0.0, help="seconds before reply")
    parser.add_argument("--words", type=int, default=400, help="words per default reply")
    parser.add_argument("--record", action="store_true", help="keep every request in memory")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    server = FakeModelServer(
        args.host,
        args.port,
        chunk_count=args.chunks,
        chunk_delay=args.chunk_delay,
        first_byte_delay=args.first_byte_delay,
        record_requests=args.record,
    )
    server.set_responder(filler_responder(args.words))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        print(f"READY {server.base_url}", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    # As its own process (the benchmark's model API), on the fastest loop at hand, so that its
    # own overhead stays out of the figures of the service it serves.
    from bot import eventloop

    eventloop.run(_serve(_parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
