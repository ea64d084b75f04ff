"""Discord's error answers: an ApiError raised inside a handler becomes Discord's JSON error body
(``{"message", "code", "errors"?}``) with its status and headers."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any


class ApiError(Exception):
    """Raised inside a handler; becomes Discord's JSON error body."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        errors: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status, self.code, self.message = status, code, message
        self.errors = errors
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "code": self.code, **self.extra}
        if self.errors:
            body["errors"] = self.errors
        return body


def form_error(field_name: str, code: str, message: str) -> ApiError:
    errors = {field_name: {"_errors": [{"code": code, "message": message}]}}
    return ApiError(400, 50035, "Invalid Form Body", errors=errors)


def unknown_channel() -> ApiError:
    return ApiError(404, 10003, "Unknown Channel")


def unknown_webhook() -> ApiError:
    return ApiError(404, 10015, "Unknown Webhook")


def unknown_message() -> ApiError:
    return ApiError(404, 10008, "Unknown Message")


def archived() -> ApiError:
    return ApiError(400, 50083, "Operation cannot be performed on an archived thread")


def missing_permissions() -> ApiError:
    return ApiError(403, 50013, "Missing Permissions")


def wrong_channel_type() -> ApiError:
    return ApiError(400, 50024, "Cannot execute action on this channel type")


def old_message_edits(retry_after: float) -> ApiError:
    """Discord's 30046: a 429 that carries a code (discord.py reports "429 Too Many Requests
    (error code: 30046)"), shaped like every other 429 so discord.py retries it first."""
    limited = too_many_requests(retry_after, scope="user", bucket="old-message-edits", limit=1)
    return ApiError(
        429,
        30046,
        "Maximum number of edits to messages older than 1 hour reached. Try again later",
        headers=limited.headers,
        extra=limited.extra,
    )


def too_many_requests(
    retry_after: float, *, scope: str, bucket: str, limit: int, is_global: bool = False
) -> ApiError:
    headers = {
        "Via": "1.1 google",  # discord.py treats a 429 without Via as a Cloudflare ban
        "Retry-After": str(max(1, math.ceil(retry_after))),
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
        "X-RateLimit-Reset-After": f"{retry_after:.3f}",
        "X-RateLimit-Bucket": bucket,
        "X-RateLimit-Scope": scope,
    }
    if is_global:
        headers["X-RateLimit-Global"] = "true"
    extra = {"retry_after": retry_after, "global": is_global}
    return ApiError(429, 0, "You are being rate limited.", headers=headers, extra=extra)
