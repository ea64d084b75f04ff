"""OpenAI Chat Completions, and every server that speaks it (OpenRouter, Ollama, vLLM, DeepSeek,
Gemini's OpenAI endpoint), through the official async SDK, streamed with usage.

Per model (registry): the output limit goes in `max_tokens` or `max_completion_tokens` (reasoning
models answer 400 to the former); temperature is sent only when set; a system prompt is a `system`
message (native), a `developer` message, or already inlined into the first user message (upstream's
handling, done when the template is rendered). ^C^C is detected by the engine, never via `stop`.

The client talks through the SDK's documented aiohttp client (`DefaultAioHttpClient`, the
`aiohttp` extra, which the SDK's README recommends for concurrency); its own retries are off
(max_retries=0): the engine is the one retry layer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping
from typing import Any

import openai

from ..conversation import ModelRequest
from ..records import Usage
from ..registry import ProviderSpec
from . import _errors, _sse


class OpenAIProvider:
    def __init__(self, spec: ProviderSpec, env: Mapping[str, str], *, timeout: float):
        self._spec = spec
        # The SDK refuses to start without a key; local servers (Ollama, vLLM) need none, so a
        # placeholder is sent to them.
        self._client = openai.AsyncOpenAI(
            api_key=spec.key(env) or "not-needed",
            base_url=spec.resolve_base_url(env),
            timeout=timeout,
            max_retries=0,
            http_client=openai.DefaultAioHttpClient(),
        )

    async def stream(self, request: ModelRequest) -> AsyncIterator[str | Usage]:
        """The SDK builds and sends the request and raises HTTP errors; the chunks are read here:
        building the SDK's typed chunk objects cost most of a reply's CPU (bench/)."""
        opening = self._client.chat.completions.with_streaming_response.create(
            **self._params(request)
        )
        async for item in _sse.through_sdk(
            opening,
            lambda: _Chunks(request, self._spec),
            request,
            self._spec,
            url=str(self._client.base_url).rstrip("/"),
            status_error=openai.APIStatusError,
            connection_error=openai.APIConnectionError,
        ):
            yield item

    @staticmethod
    def _params(request: ModelRequest) -> dict[str, Any]:
        spec = request.spec
        messages = [m.as_dict() for m in request.messages]
        if request.system:
            role = "developer" if spec.system_prompt == "developer" else "system"
            messages.insert(0, {"role": role, "content": request.system})
        params: dict[str, Any] = {
            "model": spec.api_id,
            # The conversation travels in extra_body, which the SDK sends as it is: its typed
            # transform of a long message list cost about half of a reply's CPU (bench/), and our
            # messages are plain role/content strings that need none. The wire body is the same
            # (tests/engine/test_upstream_fidelity.py compares it).
            "messages": [],
            "extra_body": {"messages": messages},
            spec.token_param: spec.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if spec.temperature is not None:
            params["temperature"] = spec.temperature
        return params

    async def aclose(self) -> None:
        await self._client.close()


class _Chunks:
    """Chat Completions chunks: content deltas, usage in the last chunk (include_usage), and
    [DONE] or a finish reason as the end marker (some compatible servers omit [DONE])."""

    def __init__(self, request: ModelRequest, spec: ProviderSpec) -> None:
        self._request, self._spec = request, spec
        self._usage = Usage()
        self._done = False
        self._cut_off = False  # finish_reason "length": the reply hit the token limit
        self._ending = False  # a finish reason came; usage may still follow, then [DONE]

    @property
    def finished(self) -> bool:
        return self._done or self._ending

    def event(self, name: str | None, data: str) -> str | None:
        if data == "[DONE]":
            self._done = True
            return None
        chunk = _errors.parse_json(data, self._request, self._spec)
        if "error" in chunk:
            raise _errors.in_stream(chunk, self._request, self._spec)
        if chunk.get("usage"):
            self._usage = _usage(chunk["usage"])
        pieces = []
        for choice in chunk.get("choices") or ():
            content = (choice.get("delta") or {}).get("content")
            if content:
                pieces.append(content)
            finish = choice.get("finish_reason")
            self._ending = self._ending or bool(finish)
            self._cut_off = self._cut_off or finish == "length"
        return "".join(pieces) or None

    def usage(self) -> Usage:
        return dataclasses.replace(self._usage, cut_off=self._cut_off)


def _usage(reported: dict[str, Any]) -> Usage:
    """prompt_tokens includes the cached ones: they are split out, so input_tokens is the uncached
    remainder as Anthropic counts it. A server that reports no cached_tokens leaves it unknown."""
    prompt, output = reported.get("prompt_tokens"), reported.get("completion_tokens")
    cached = (reported.get("prompt_tokens_details") or {}).get("cached_tokens")
    if not isinstance(cached, int) or not isinstance(prompt, int):
        return Usage(prompt, output)
    # OpenAI has no cache writes to bill: a reported cache makes them a known zero.
    return Usage(prompt - cached, output, cache_read_tokens=cached, cache_write_tokens=0)
