"""The world interface (upstream's `cli` participant): a server that plays the terminal for real.

Exactly as upstream: POST {WORLD_INTERFACE_URL}/v1/chat/completions with only the content of the last
message of this participant's context, `Authorization: Bearer $WORLD_INTERFACE_KEY` when that is set,
and the reply is `choices[0].message.content`. It does not stream: the answer is one delta.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping

import aiohttp

from ..conversation import ModelRequest
from ..errors import PermanentProviderError
from ..records import Usage
from ..registry import ProviderSpec
from . import _errors, _text


class WorldInterfaceProvider:
    def __init__(self, spec: ProviderSpec, env: Mapping[str, str], *, timeout: float):
        self._spec = spec
        base = (spec.resolve_base_url(env) or "http://localhost:3000").rstrip("/")
        self._url = f"{base}/v1/chat/completions"
        key = spec.key(env)
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def stream(self, request: ModelRequest) -> AsyncIterator[str | Usage]:
        alias = request.spec.alias
        if not request.messages:
            raise PermanentProviderError(
                "the world interface answers the message before it, so it cannot speak first",
                model=alias,
                provider=self._spec.name,
            )
        payload = {"messages": [{"role": "user", "content": request.messages[-1].content}]}
        yield await self._post(alias, payload)
        yield Usage()

    async def _post(self, alias: str, payload: Mapping[str, object]) -> str:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(self._url, json=payload, headers=self._headers) as resp:
                if resp.status >= 400:
                    raise _errors.from_status(
                        resp.status,
                        (await resp.text())[:300] or resp.reason or "",
                        model=alias,
                        provider=self._spec.name,
                        api_id="world interface",
                        key_env=self._spec.key_env,
                        headers=resp.headers,
                    )
                text = await resp.text()
        except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            base = self._url.removesuffix("/v1/chat/completions")
            if nobody := _errors.unreachable(exc, base, model=alias, provider=self._spec):
                raise nobody from exc
            raise _errors.connection_lost(
                f"{self._url}: {str(exc) or type(exc).__name__}",
                model=alias,
                provider=self._spec.name,
            ) from exc
        except aiohttp.ClientError as exc:  # e.g. WORLD_INTERFACE_URL without http://
            raise PermanentProviderError(
                f"cannot reach {self._url}: {exc}; check WORLD_INTERFACE_URL",
                model=alias,
                provider=self._spec.name,
            ) from exc
        try:
            body = json.loads(text)
            return _text.mend(str(body["choices"][0]["message"]["content"]))
        except (ValueError, KeyError, IndexError, TypeError):
            raise PermanentProviderError(
                f"{self._url} did not answer as the world interface does: {text[:200]!r}",
                model=alias,
                provider=self._spec.name,
            ) from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
