"""Discord limits edits of messages older than an hour (error 30046). The end of a long run is
still announced in the thread, and the refused edit of the starter message is logged once and
changes nothing else."""

from __future__ import annotations

import logging
import re

from tests.bot.discord_world import discord_world
from tests.helpers import until

# The closing line, with the run's cost ("at least": the fake's OpenAI side reports no cache).
ENDED = re.compile(
    r"Run 1: Reached maximum number of turns \(1\)\. Conversation ended\. Cost: (at least )?\$\d+\.\d{4}\."
)


async def test_a_refused_starter_edit_leaves_the_closing_line_and_is_logged_once(
    model_server, tmp_path, caplog
):
    async with discord_world(model_server, tmp_path, DISCORD_STREAMING="false") as w:
        # Every message counts as old at once, and none may be edited.
        w.fake.old_message_age, w.fake.old_message_edits = 0.0, 0
        w.fake.old_message_retry_after = 0.01
        with caplog.at_level(logging.WARNING, logger="bot.discord"):
            await w.followup_text(
                await w.command("start", {"models": "opus gpt4o", "max_turns": 1})
            )
            record = await w.run_ended(1)
            thread = await w.thread_of(1)
            await until(lambda: w.fake.messages(thread)[-1]["content"].startswith("Run 1: "))
            await until(lambda: w.fake.find_calls("PATCH", rf"/channels/{w.channel}/messages/"))
            await until(lambda: any("starter" in r.getMessage() for r in caplog.records))
        starter = next(m for m in w.fake.messages(w.channel) if "Backrooms run 1" in m["content"])
        shown = [m["content"] for m in w.fake.messages(thread)]
    assert record.end.reason == "max_turns"
    assert ENDED.fullmatch(shown[-1]), shown[-1]
    assert len(shown) == 3  # both replies, then the closing line
    assert "Outcome" not in starter["content"]
    ours = [r for r in caplog.records if r.name.startswith("bot.discord")]
    assert len(ours) == 1 and "30046" in ours[0].getMessage()
    assert ours[0].exc_info is None  # one line, no traceback
