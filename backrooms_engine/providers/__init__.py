"""Model providers: one module per API family behind the `Provider` port (ports.py).

`ProviderPool` builds one client per declared provider, lazily, and shares it between runs so that
hundreds of concurrent runs share one connection pool per provider (the SDK's aiohttp client).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from ..ports import Provider
from ..registry import ModelSpec, ProviderSpec


class ProviderPool:
    """`timeout`: seconds an attempt may wait for a connection or for the next byte; past it the
    attempt is a lost connection, which the engine retries (its deadline bounds the whole
    reply)."""

    def __init__(
        self, env: Mapping[str, str], *, timeout: float = 300.0, prompt_cache: bool = True
    ):
        self._env = env
        self._timeout = timeout
        self._prompt_cache = prompt_cache  # BACKROOMS_PROMPT_CACHE: Claude's cache breakpoints
        self._clients: dict[str, Provider] = {}

    def for_spec(self, spec: ModelSpec) -> Provider:
        provider = self._clients.get(spec.provider.name)
        if provider is None:
            provider = self._clients[spec.provider.name] = self._build(spec.provider)
        return provider

    def _build(self, spec: ProviderSpec) -> Provider:
        # Imported here so a run that uses only one API family never imports the other's SDK.
        if spec.kind == "anthropic":
            from .anthropic import AnthropicProvider

            return AnthropicProvider(
                spec, self._env, timeout=self._timeout, prompt_cache=self._prompt_cache
            )
        if spec.kind == "openai":
            from .openai import OpenAIProvider

            return OpenAIProvider(spec, self._env, timeout=self._timeout)
        if spec.kind == "world_interface":
            from .world import WorldInterfaceProvider

            return WorldInterfaceProvider(spec, self._env, timeout=self._timeout)
        if spec.kind == "offline":
            from .offline import OfflineProvider

            return OfflineProvider(self._env)
        raise ValueError(f"unknown provider kind {spec.kind!r}")

    async def warm(self) -> None:
        """Import the model SDKs in a worker thread. They take seconds to import; done lazily at
        a run's first request it would stall the event loop, and with it chat acknowledgements
        (3 s limits on Discord and Slack) and gateway heartbeats."""
        await asyncio.to_thread(_import_sdks)

    async def aclose(self) -> None:
        for provider in self._clients.values():
            await provider.aclose()
        self._clients.clear()


def _import_sdks() -> None:
    from . import anthropic, openai, world  # noqa: F401
