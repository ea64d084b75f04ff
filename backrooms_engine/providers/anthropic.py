"""Anthropic Messages API through the official async SDK, streamed.

Differences from upstream forced by today's API, handled here:
- the SDK no longer accepts `temperature`, so none is sent (upstream sent 1.0);
- the SDK's own retries are off (max_retries=0): the engine is the one retry layer.
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

log = logging.getLogger(__name__)


class AnthropicProvider:
    def __init__(self, spec: ProviderSpec, env: Mapping[str, str], *, timeout: float):
        self._spec = spec
        # A missing key is caught before a run starts (registry.check_keys); an empty string here
        # would only fail at request time, with the API's 401.
        self._client = anthropic.AsyncAnthropic(
            api_key=spec.key(env) or "missing-key",
            base_url=spec.resolve_base_url(env),
            max_retries=0,
            timeout=timeout,
        )

    async def stream(self, request: ModelRequest) -> AsyncIterator[str | Usage]:
        """The SDK builds and sends the request and raises HTTP errors; the event stream itself
        is read here, line by line: the SDK's typed events cost most of a reply's CPU (bench/)."""
        opening = self._client.messages.with_streaming_response.create(
            **self._params(request), stream=True
        )
        async for item in _sse.through_sdk(
            opening,
            self._read,
            request,
            self._spec,
            status_error=anthropic.APIStatusError,
            connection_error=anthropic.APIConnectionError,
        ):
            yield item

    async def _read(
        self, request: ModelRequest, lines: AsyncIterator[str]
    ) -> AsyncIterator[str | Usage]:
        input_tokens = output_tokens = None
        async for _, data in _sse.events(lines):
            event = _errors.parse_json(data, request, self._spec)
            kind = event.get("type")
            if kind == "content_block_delta":
                delta = event.get("delta") or {}
                if delta.get("type") == "text_delta" and delta.get("text"):
                    yield delta["text"]
            elif kind == "message_start":
                usage = (event.get("message") or {}).get("usage") or {}
                input_tokens = usage.get("input_tokens")
                output_tokens = usage.get("output_tokens")
            elif kind == "message_delta":
                output_tokens = (event.get("usage") or {}).get("output_tokens", output_tokens)
            elif kind == "message_stop":
                yield Usage(input_tokens, output_tokens)
                return
            elif kind == "error":
                raise _errors.in_stream(event, request, self._spec)
        raise _errors.connection_lost(
            "the stream ended before message_stop",
            model=request.spec.alias,
            provider=self._spec.name,
        )

    @staticmethod
    def _params(request: ModelRequest) -> dict[str, Any]:
        spec = request.spec
        params: dict[str, Any] = {
            "model": spec.api_id,
            "max_tokens": spec.max_tokens,
            "messages": [m.as_dict() for m in request.messages],
        }
        if request.system:  # upstream omits the field when the prompt is empty
            params["system"] = request.system
        return params

    async def aclose(self) -> None:
        await self._client.close()
