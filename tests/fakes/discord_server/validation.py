"""Discord's checks of what a client sends; each failure is the ApiError Discord answers with."""

from __future__ import annotations

from typing import Any

from .constants import (
    AUTO_ARCHIVE_DURATIONS,
    COMMAND_NAME,
    FORBIDDEN_NAME_PARTS,
    MAX_CONTENT,
    MAX_USERNAME,
)
from .errors import ApiError, form_error


def too_long() -> ApiError:
    return form_error(
        "content", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT} or fewer in length."
    )


def message(body: Any, files: tuple[str, ...]) -> dict[str, Any]:
    """A message body as sent to create a message (or a webhook's): the body, or a 400."""
    if not isinstance(body, dict):
        body = {}
    content = body.get("content")
    if content is not None and not isinstance(content, str):
        raise form_error("content", "BASE_TYPE_STRING", "Must be a string.")
    if content is not None and len(content) > MAX_CONTENT:
        raise too_long()
    if len(body.get("embeds") or []) > 10:
        raise form_error("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    has_body = (
        content or body.get("embeds") or files or body.get("components") or body.get("sticker_ids")
    )
    if not has_body:
        raise ApiError(400, 50006, "Cannot send an empty message")
    return body


def webhook_name(field_name: str, name: Any) -> None:
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_USERNAME:
        raise form_error(
            field_name, "BASE_TYPE_BAD_LENGTH", f"Must be between 1 and {MAX_USERNAME} in length."
        )
    lowered = name.lower()
    for part in FORBIDDEN_NAME_PARTS:
        if part in lowered:
            raise form_error(
                field_name, "USERNAME_INVALID_CONTAINS", f'Username cannot contain "{part}"'
            )


def thread_name(name: Any) -> None:
    if not isinstance(name, str) or not 1 <= len(name) <= 100:
        raise form_error("name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")


def auto_archive(duration: Any) -> None:
    if duration not in AUTO_ARCHIVE_DURATIONS:
        raise form_error(
            "auto_archive_duration",
            "BASE_TYPE_CHOICES",
            "Value must be one of {60, 1440, 4320, 10080}.",
        )


def command(index: int, body: Any) -> None:
    """One application command of a bulk overwrite (PUT .../commands)."""

    def fail(key: str, message: str) -> ApiError:
        return ApiError(
            400,
            50035,
            "Invalid Form Body",
            errors={str(index): {key: {"_errors": [{"code": "INVALID", "message": message}]}}},
        )

    if not isinstance(body, dict):
        raise fail("_root", "Must be an object.")
    kind = body.get("type", 1)
    name = body.get("name")
    if (
        not isinstance(name, str)
        or not COMMAND_NAME.match(name)
        or (kind == 1 and name != name.lower())
    ):
        raise fail("name", "Command name is invalid")
    if kind == 1 and not 1 <= len(body.get("description") or "") <= 100:
        raise fail("description", "Must be between 1 and 100 in length.")
    if len(body.get("options") or []) > 25:
        raise fail("options", "Must be 25 or fewer in length.")
