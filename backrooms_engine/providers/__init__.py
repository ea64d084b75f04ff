"""Model providers: one module per API family behind the `Provider` port (ports.py).

`ProviderPool` builds one client per declared provider, lazily, and shares it between runs so that
hundreds of concurrent runs share a few connection pools.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Mapping

from ..ports import Provider
from ..registry import ModelSpec, ProviderSpec
from ._http import ReadPacing


class ProviderPool:
    def __init__(
        self, env: Mapping[str, str], *, timeout: float = 600.0, prompt_cache: bool = True
    ):
        self._env = env
        self._timeout = timeout
        self._prompt_cache = prompt_cache  # BACKROOMS_PROMPT_CACHE: Claude's cache breakpoints
        self._clients: dict[str, Provider] = {}
        self._pacing = ReadPacing()  # one for every model connection of the process (_http.py)

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
                spec,
                self._env,
                timeout=self._timeout,
                pacing=self._pacing,
                prompt_cache=self._prompt_cache,
            )
        if spec.kind == "openai":
            from .openai import OpenAIProvider

            return OpenAIProvider(spec, self._env, timeout=self._timeout, pacing=self._pacing)
        if spec.kind == "world_interface":
            from .world import WorldInterfaceProvider

            return WorldInterfaceProvider(spec, self._env, timeout=self._timeout)
        if spec.kind == "offline":
            from .offline import OfflineProvider

            return OfflineProvider(self._env)
        raise ValueError(f"unknown provider kind {spec.kind!r}")

    @property
    def socket_reads(self) -> int:
        """Reads of model connections so far (paced under load: _http.py), for the benchmark."""
        return self._pacing.reads

    async def warm(self) -> None:
        """Import the model SDKs in a worker thread. They take seconds to import; done lazily at
        a run's first request it would stall the event loop, and with it chat acknowledgements
        (3 s limits on Discord and Slack) and gateway heartbeats.

        Then, once per process, everything alive (the SDKs' modules, classes and schemas, a few
        hundred thousand objects that live as long as the process) is moved out of the cyclic
        garbage collector's sight. Otherwise each full collection walks them all, a stall of about
        0.2 s for every run and chat surface of the process (bench/)."""
        await asyncio.to_thread(_import_sdks)
        _freeze_once()

    async def aclose(self) -> None:
        for provider in self._clients.values():
            await provider.aclose()
        self._clients.clear()


_frozen = False


def _freeze_once() -> None:
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()  # what is garbage now is freed, not frozen
        gc.freeze()


def _import_sdks() -> None:
    from . import anthropic, openai, world  # noqa: F401
