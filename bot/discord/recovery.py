"""What a crash may leave in a run's thread without its record, found again after a restart.

Before each webhook send, the part it is, (reply, part), is written to the run's meta
(`discord_sending`). A process killed between Discord's answer and the record of the message id
leaves one webhook message in the thread that no stored post names and that is newer than every
recorded one (snowflakes grow with time, on Discord's clock alone, so ours never enters the
comparison); the next start adopts that message as the pending part. Text is never compared: a
streamed beginning and a later reply may read the same, and adopting by text once placed reply 7
between replies 2 and 3. Discord keeps no invisible field to mark a message with: a webhook
message's `nonce` is not returned by later reads, and components are buttons everyone sees.

The closing line works the same way (`discord_closing`: "sending:STRETCH" before it is posted,
"shown:STRETCH" after); it is our own text, so the bot's message with exactly that text, newer
than every recorded post, is the one a crash left. A stretch is (max turns, turns): a run given
more turns ends, and is announced, once more.
"""

from __future__ import annotations

import logging
from typing import Any

import discord

from backrooms_engine.ports import SurfaceState

from .poster import SURFACE, Unrecorded

log = logging.getLogger(__name__)

SENDING = "discord_sending"
CLOSING = "discord_closing"
RECENT_HISTORY = 50  # messages read back; what a crash leaves is among the newest


def part_of(value: str | None) -> tuple[int, int] | None:
    """(seq, part) from the meta `discord_sending`, or None."""
    seq, _, part = (value or "").partition(":")
    return (int(seq), int(part)) if seq.isdigit() and part.isdigit() else None


async def _newer_than_posts(
    http: discord.http.HTTPClient, state: SurfaceState, run_id: int, thread_id: int
) -> list[dict[str, Any]] | None:
    """The thread's newest messages that came after every recorded post of the run, oldest
    first; None when Discord refuses to show them (the restart then trusts the store alone)."""
    known = await state.posts(run_id, SURFACE)
    newest = max((int(v) for v in known.values()), default=0)
    try:
        recent = await http.logs_from(thread_id, RECENT_HISTORY)
    except discord.HTTPException as exc:
        log.warning("run %s: thread history not read (%s); a post may repeat", run_id, exc.text)
        return None
    return sorted((m for m in recent if int(m["id"]) > newest), key=lambda m: int(m["id"]))


async def unrecorded_post(
    http: discord.http.HTTPClient, state: SurfaceState, run_id: int, thread_id: int
) -> Unrecorded | None:
    """The webhook message a crash left between a send and its record, as the part whose send
    was begun last; None when every begun send is recorded."""
    pending = part_of(await state.get_meta(run_id, SENDING))
    if pending is None or pending in await state.posts(run_id, SURFACE):
        return None
    newer = await _newer_than_posts(http, state, run_id, thread_id) or []
    found = [m for m in newer if m.get("webhook_id")]
    if len(found) > 1:  # one send at a time per run: only a second writer could do this
        log.warning("run %s: %d unrecorded messages; the oldest is adopted", run_id, len(found))
    if not found:
        return None
    return Unrecorded(pending[0], pending[1], int(found[0]["id"]), found[0]["content"])


async def closing_shown(
    http: discord.http.HTTPClient,
    state: SurfaceState,
    run_id: int,
    thread_id: int,
    text: str,
    stretch: str,
) -> bool:
    """Whether this stretch's closing line is in the thread already: recorded, or posted just
    before a crash lost the record."""
    mark = await state.get_meta(run_id, CLOSING)
    if mark != f"sending:{stretch}":
        return mark == f"shown:{stretch}"
    newer = await _newer_than_posts(http, state, run_id, thread_id) or []
    return any(not m.get("webhook_id") and m["content"] == text for m in newer)
