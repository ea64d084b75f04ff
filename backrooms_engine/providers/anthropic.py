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
import httpx2  # the SDK's HTTP client; a dropped stream surfaces as its TransportError

from ..conversation import ModelRequest
from ..records import Usage
from ..registry import ProviderSpec
from . import _errors

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
        try:
            # The raw event stream, not the MessageStream helper: the helper rebuilds the whole
            # message at every event, about an eighth of the CPU a reply costs (bench/).
            events = await self._client.messages.create(**self._params(request), stream=True)
            input_tokens = output_tokens = None
            async for event in events:
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    yield event.delta.text
                elif event.type == "message_start":
                    input_tokens = event.message.usage.input_tokens
                    output_tokens = event.message.usage.output_tokens
                elif event.type == "message_delta" and event.usage is not None:
                    output_tokens = event.usage.output_tokens
            yield Usage(input_tokens, output_tokens)
        except anthropic.APIStatusError as exc:
            raise _errors.from_sdk(exc, request, self._spec) from exc
        except (anthropic.APIConnectionError, httpx2.TransportError) as exc:
            raise _errors.connection_lost(
                str(exc) or type(exc).__name__, model=request.spec.alias, provider=self._spec.name
            ) from exc

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
