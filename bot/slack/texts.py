"""What the Slack relay says, in Slack's terms: mrkdwn bold, Block Kit blocks, Slack error codes.

The words themselves are shared with Discord (bot.messages); only the shaping lives here.
"""

from __future__ import annotations

from typing import Any

from slack_sdk.errors import SlackApiError

from backrooms_engine.pricing import RunUsage
from backrooms_engine.records import RunEnd, RunRecord

from .. import messages
from ..text import slack_escape

BOLD = "*"
STOP_ACTION = "stop_run"  # the action_id of the Stop button; its value is the run id
RESTARTING = "The relay is restarting; try again in a minute."
# A section block's text is capped at 3,000 characters by Slack; a starter text is far shorter.
SECTION_LIMIT = 3000

# Errors that mean the run's thread can no longer be posted to: the run ends with reason "gone".
GONE = {
    "channel_not_found": "its Slack channel was deleted or is no longer visible to the bot",
    "is_archived": "its Slack channel was archived",
    "not_in_channel": "the bot was removed from its Slack channel",
    "missing_scope": "the Slack app lost a scope it needs",
    "token_revoked": "the Slack app was uninstalled",
    "account_inactive": "the Slack app was uninstalled",
    "invalid_auth": "the Slack bot token stopped working",
}


def error_code(exc: SlackApiError) -> str:
    return str(exc.response.get("error") or "unknown_error")


def help_text() -> str:
    return messages.help_text(BOLD, "the Stop button on its first message")


def root_text(record: RunRecord, starter: str, public_url: str | None) -> str:
    """The root message while the run goes."""
    return messages.starter_text(
        record,
        slack_escape(starter),
        bold=BOLD,
        stop_hint=_stop_hint(record.id),
        public_url=public_url,
    )


def _stop_hint(run_id: int) -> str:
    return f"Press {BOLD}Stop{BOLD} below or type `/backrooms stop {run_id}` to end it."


def outcome_text(
    record_id: int, end: RunEnd, public_url: str | None, usage: RunUsage | None = None
) -> str:
    return slack_escape(messages.closing_text(record_id, end, public_url, usage))


def root_blocks(text: str, run_id: int, *, stop_button: bool) -> list[dict[str, Any]]:
    """The root message: the starter text, and while the run goes, a Stop button."""
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "block_id": "run",
            "text": {"type": "mrkdwn", "text": text[:SECTION_LIMIT]},
        }
    ]
    if stop_button:
        blocks.append(
            {
                "type": "actions",
                "block_id": "controls",
                "elements": [
                    {
                        "type": "button",
                        "action_id": STOP_ACTION,
                        "style": "danger",
                        "text": {"type": "plain_text", "text": "Stop"},
                        "value": str(run_id),
                    }
                ],
            }
        )
    return blocks


def ended_root_text(record: RunRecord, starter: str, public_url: str | None, outcome: str) -> str:
    """The root message once the run is over: the starter text without its stop hint, then the
    outcome in bold."""
    root = root_text(record, starter, public_url).replace("\n" + _stop_hint(record.id), "")
    first, _, rest = outcome.partition("\n")
    return f"{root}\n{BOLD}{first}{BOLD}" + (f"\n{rest}" if rest else "")


def refusal(exc: SlackApiError, bot_name: str) -> str:
    """Why Slack refused a post, and what the user can do about it."""
    code = error_code(exc)
    if code == "not_in_channel":
        return f"I'm not in this channel yet. Invite me with `/invite @{bot_name}` and try again."
    if code == "missing_scope":
        needed = exc.response.get("needed") or "a scope"
        return (
            f"The Slack app lacks the `{needed}` scope. Add it under OAuth & Permissions "
            "(slack-manifest.yml lists every scope), reinstall the app and try again."
        )
    if code == "channel_not_found":
        return f"I cannot see this channel. Invite me with `/invite @{bot_name}` and try again."
    if code == "is_archived":
        return "This channel is archived; start the run somewhere else."
    return f"Slack refused the message (`{code}`)."


def permalink(domain: str | None, channel: str, ts: str) -> str:
    """A link to a message, built without a chat.getPermalink call."""
    if not domain:
        return f"in <#{channel}>"
    return f"<https://{domain}.slack.com/archives/{channel}/p{ts.replace('.', '')}|thread>"
