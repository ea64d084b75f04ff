"""Anthropic Messages API through the official async SDK, streamed.

Differences from upstream forced by today's API, handled here:
- the SDK no longer accepts `temperature`, so none is sent (upstream sent 1.0);
- the SDK's own retries are off (max_retries=0): the engine is the one retry layer.

The client talks through the SDK's documented aiohttp client (`DefaultAioHttpClient`, the
`aiohttp` extra): proxies, TLS and keep-alive are the SDK's, as its README describes them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anthropic

from ..conversation import ModelRequest
from ..records import Usage
from ..registry import ProviderSpec
from . import _errors, _sse
from .cache_marks import SeatRequest, mark_request

log = logging.getLogger(__name__)


class AnthropicProvider:
    def __init__(
        self,
        spec: ProviderSpec,
        env: Mapping[str, str],
        *,
        timeout: float,
        prompt_cache: bool = True,
    ):
        self._spec = spec
        self._prompt_cache = prompt_cache  # BACKROOMS_PROMPT_CACHE
        # A missing key is caught before a run starts (registry.check_keys); an empty string here
        # would only fail at request time, with the API's 401.
        self._client = anthropic.AsyncAnthropic(
            api_key=spec.key(env) or "missing-key",
            base_url=spec.resolve_base_url(env),
            timeout=timeout,
            max_retries=0,
            http_client=anthropic.DefaultAioHttpClient(),
        )

    async def stream(self, request: ModelRequest) -> AsyncIterator[str | Usage]:
        """The SDK builds and sends the request and raises HTTP errors; the event stream itself
        is read here: the SDK's typed events cost most of a reply's CPU (bench/)."""
        opening = self._client.messages.with_streaming_response.create(
            **self._params(request), stream=True
        )
        async for item in _sse.through_sdk(
            opening,
            lambda: _Events(request, self._spec),
            request,
            self._spec,
            url=str(self._client.base_url).rstrip("/"),
            status_error=anthropic.APIStatusError,
            connection_error=anthropic.APIConnectionError,
        ):
            yield item

    def _params(self, request: ModelRequest) -> dict[str, Any]:
        spec = request.spec
        params: dict[str, Any] = {
            "model": spec.api_id,
            "max_tokens": spec.max_tokens,
            "messages": self._messages(request),
        }
        if request.system:  # upstream omits the field when the prompt is empty
            params["system"] = request.system
        if spec.effort is not None:  # thinking models: how hard to think (models.toml)
            params["output_config"] = {"effort": spec.effort}
        return params

    def _messages(self, request: ModelRequest) -> list[dict[str, Any]]:
        """The conversation, with prompt-cache breakpoints where they pay (cache_marks.py)."""
        messages: list[dict[str, Any]] = [m.as_dict() for m in request.messages]
        if not (self._prompt_cache and request.spec.prompt_cache):
            return messages
        before = request.previous
        return mark_request(
            request.system,
            messages,
            min_tokens=request.spec.cache_min_tokens,
            previous=None if before is None else SeatRequest(0.0, before.messages),
            now=0.0 if before is None else before.seconds_ago,
        ).messages

    async def aclose(self) -> None:
        await self._client.close()


class _Events:
    """The Messages API's stream: text deltas, usage in message_start and message_delta, and
    message_stop as the end marker."""

    def __init__(self, request: ModelRequest, spec: ProviderSpec) -> None:
        self._request, self._spec = request, spec
        self.finished = False
        self._counts: dict[str, int | None] = dict.fromkeys(_COUNTS.values())
        self._cut_off = False

    def event(self, name: str | None, data: str) -> str | None:
        event = _errors.parse_json(data, self._request, self._spec)
        kind = event.get("type")
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta":
                return delta.get("text") or None
        elif kind == "message_start":
            self._count((event.get("message") or {}).get("usage") or {})
        elif kind == "message_delta":
            self._count(event.get("usage") or {})
            stop = (event.get("delta") or {}).get("stop_reason")
            self._cut_off = self._cut_off or stop == "max_tokens"
        elif kind == "message_stop":
            self.finished = True
        elif kind == "error":
            raise _errors.in_stream(event, self._request, self._spec)
        return None

    def _count(self, usage: Mapping[str, Any]) -> None:
        """message_start carries the counts so far, message_delta the final ones (cumulative):
        the latest value the API gave for each wins."""
        for wire, ours in _COUNTS.items():
            if isinstance(usage.get(wire), int):
                self._counts[ours] = usage[wire]

    def usage(self) -> Usage:
        return Usage(**self._counts, cut_off=self._cut_off)


# The API's usage fields -> ours. Its input_tokens is the uncached remainder, beside the cache's.
_COUNTS = {
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "cache_read_input_tokens": "cache_read_tokens",
    "cache_creation_input_tokens": "cache_write_tokens",
}
