"""Translating HTTP failures into the engine's two kinds of provider error."""

from __future__ import annotations

import errno
import json
import socket
from collections.abc import Mapping
from typing import Any

from ..conversation import ModelRequest
from ..errors import (
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
    UnreachableProviderError,
    is_transient_status,
)
from ..registry import ProviderSpec

# Error types an API may send inside a stream that has already answered 200.
TRANSIENT_ERROR_TYPES = frozenset(
    {"overloaded_error", "api_error", "rate_limit_error", "timeout_error", "server_error"}
)


# Error types that no retry will cure.
PERMANENT_ERROR_TYPES = frozenset(
    {"invalid_request_error", "authentication_error", "permission_error", "not_found_error"}
)


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from a retry-after header (delta-seconds form; the HTTP-date form is ignored)."""
    if not headers:
        return None
    for name in ("retry-after-ms", "retry-after"):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value)
        except ValueError:
            continue
        return seconds / 1000 if name == "retry-after-ms" else seconds
    return None


def describe(status: int | None, message: str, key_env: str | None, api_id: str) -> str:
    if status == 401:
        return f"the API key was refused (401); check {key_env or 'the key'}"
    if status == 403:
        return f"permission denied (403): {message}"
    if status == 404:
        return f"model {api_id!r} not found (404): {message}"
    if status is None:
        return message
    return f"HTTP {status}: {message}"


def from_status(
    status: int,
    message: str,
    *,
    model: str,
    provider: str,
    api_id: str,
    key_env: str | None,
    headers: Mapping[str, str] | None = None,
    error_type: str | None = None,
) -> ProviderError:
    text = describe(status, message, key_env, api_id)
    transient = is_transient_status(status) or (
        status < 400 and error_type in TRANSIENT_ERROR_TYPES
    )
    if transient:
        return TransientProviderError(
            text, model=model, provider=provider, status=status, retry_after=retry_after(headers)
        )
    return PermanentProviderError(text, model=model, provider=provider, status=status)


def connection_lost(message: str, *, model: str, provider: str) -> TransientProviderError:
    return TransientProviderError(f"connection lost: {message}", model=model, provider=provider)


def unreachable(
    exc: BaseException, url: str, *, model: str, provider: ProviderSpec
) -> UnreachableProviderError | None:
    """The error for an address nobody answers at, if that is what `exc` says happened: a
    connection refused or a name that did not resolve, found anywhere in its chain of causes
    (each HTTP layer wraps the one below). None for any other failure."""
    why = _unreachable_reason(exc)
    if why is None:
        return None
    setting = provider.base_url_env or f"base_url of [providers.{provider.name}] in models.toml"
    hint = "is the server running?" if why == "connection refused" else "is the address right?"
    return UnreachableProviderError(
        f"cannot connect to {url} ({why}); {hint} ({setting})", model=model, provider=provider.name
    )


def _unreachable_reason(exc: BaseException) -> str | None:
    current: BaseException | None = exc
    for _ in range(16):  # a chain of causes is short; bounded all the same
        if current is None:
            return None
        if isinstance(current, ConnectionRefusedError) or (
            isinstance(current, OSError) and current.errno == errno.ECONNREFUSED
        ):
            return "connection refused"
        if isinstance(current, socket.gaierror):
            return "name not found"
        current = current.__cause__ or current.__context__
    return None


def error_type_of(body: object) -> str | None:
    if isinstance(body, dict):
        error = body.get("error", body)
        kind = error.get("type") if isinstance(error, dict) else None
        if isinstance(kind, str):
            return kind
    return None


def message_of(body: object, fallback: str) -> str:
    if isinstance(body, dict):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, dict) else None
        if isinstance(message, str):
            return message
    return fallback


def from_sdk(exc: Any, request: ModelRequest, provider: ProviderSpec) -> ProviderError:
    """An SDK's APIStatusError (anthropic and openai share its shape) as an engine error."""
    return from_status(
        exc.status_code,
        message_of(exc.body, exc.message),
        model=request.spec.alias,
        provider=provider.name,
        api_id=request.spec.api_id,
        key_env=provider.key_env,
        headers=exc.response.headers,
        error_type=error_type_of(exc.body),
    )


def in_stream(body: dict[str, Any], request: ModelRequest, provider: ProviderSpec) -> ProviderError:
    """An error the API sent inside a stream that had already answered 200."""
    error_type = error_type_of(body)
    transient = error_type not in PERMANENT_ERROR_TYPES  # an unknown hiccup earns a retry
    text = f"error in the stream ({error_type or 'unknown'}): {message_of(body, str(body)[:200])}"
    kind = TransientProviderError if transient else PermanentProviderError
    return kind(text, model=request.spec.alias, provider=provider.name)


def parse_json(data: str, request: ModelRequest, provider: ProviderSpec) -> dict[str, Any]:
    """One event's JSON; a garbled line means a broken stream, which a retry may cure."""
    try:
        value = json.loads(data)
    except ValueError:
        raise TransientProviderError(
            f"unreadable event in the stream: {data[:120]!r}",
            model=request.spec.alias,
            provider=provider.name,
        ) from None
    return value if isinstance(value, dict) else {}
