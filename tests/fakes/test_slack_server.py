"""The fake Slack, proven against the real slack_sdk AsyncWebClient, bolt AsyncApp and the aiohttp
Socket Mode handler over loopback."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from .slack_server import (
    BOT_USER_ID,
    GENERAL_CHANNEL_ID,
    USER_ID,
    FakeSlack,
    sign_request,
    slash_command_form,
)

STEP = 5.0  # no single await in these tests may hang the suite
SIGNING_SECRET = "fake-signing-secret"
AVATAR = "https://example.invalid/opus.png"
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """slack_sdk passes HTTP(S)_PROXY to aiohttp itself and ignores NO_PROXY."""
    for name in (*_PROXY_VARS, *(v.lower() for v in _PROXY_VARS)):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("SLACK_SIGNING_SECRET", raising=False)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        yield server


@pytest.fixture
def client(fake: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=fake.bot_token, base_url=fake.api_url, timeout=int(STEP))


@pytest_asyncio.fixture
async def app(fake: FakeSlack, client: AsyncWebClient) -> AsyncIterator[AsyncApp]:
    """A bolt app connected over Socket Mode; tests add listeners before sending envelopes."""
    bolt = AsyncApp(client=client, signing_secret=SIGNING_SECRET)
    handler = AsyncSocketModeHandler(bolt, fake.app_token)
    await asyncio.wait_for(handler.connect_async(), STEP)
    await fake.wait_socket_connected(STEP)
    try:
        yield bolt
    finally:
        await asyncio.wait_for(handler.close_async(), STEP)


def button_blocks(action_id: str = "stop_run", value: str = "run-1") -> list[dict[str, Any]]:
    return [
        {"type": "section", "block_id": "intro", "text": {"type": "mrkdwn", "text": "Run 1"}},
        {
            "type": "actions",
            "block_id": "controls",
            "elements": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "text": {"type": "plain_text", "text": "Stop"},
                    "value": value,
                }
            ],
        },
    ]


async def post_root_and_reply(client: Any, channel: str, text: str) -> None:
    root = await client.chat_postMessage(
        channel=channel, text=f"Starting: {text}", blocks=button_blocks(), unfurl_links=False
    )
    await client.chat_postMessage(
        channel=channel,
        thread_ts=root["ts"],
        text="I am here.",
        username="opus",
        icon_url=AVATAR,
        unfurl_links=False,
    )


# --------------------------------------------------------------------------- Socket Mode


async def test_slash_command_acks_then_posts_root_and_thread_reply(
    fake: FakeSlack, app: AsyncApp
) -> None:
    @app.command("/backrooms")
    async def backrooms(ack: Any, command: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        await post_root_and_reply(client, command["channel_id"], command["text"])

    envelope_id = await fake.send_slash_command(text="start opus gpt4o cli")

    assert await fake.wait_ack(envelope_id, STEP) is None  # a bare ack() carries no payload
    await fake.wait_calls("chat.postMessage", 2, STEP)
    [root] = fake.messages(GENERAL_CHANNEL_ID)
    [reply] = fake.thread(GENERAL_CHANNEL_ID, root["ts"])
    assert root["text"] == "Starting: start opus gpt4o cli"
    assert root["blocks"] == button_blocks()
    assert root["reply_count"] == 1
    assert reply["thread_ts"] == root["ts"]
    assert (reply["username"], reply["icon_url"]) == ("opus", AVATAR)
    assert reply["unfurl_links"] is False
    assert [a.latency is not None and a.latency < 3.0 for a in fake.acks] == [True]
    # bolt authorizes the first request with auth.test, once, through the fake
    assert [c.method for c in fake.calls] == [
        "apps.connections.open",
        "auth.test",
        "chat.postMessage",
        "chat.postMessage",
    ]
    assert fake.calls[0].token == fake.app_token
    assert {c.token for c in fake.calls[1:]} == {fake.bot_token}


async def test_ack_text_is_the_ack_payload_and_an_ephemeral(fake: FakeSlack, app: AsyncApp) -> None:
    @app.command("/backrooms")
    async def backrooms(ack: Any) -> None:
        await ack(text="Unknown model: gpt5x")

    envelope_id = await fake.send_slash_command(text="start gpt5x")

    assert await fake.wait_ack(envelope_id, STEP) == {"text": "Unknown model: gpt5x"}
    [shown] = fake.ephemerals
    assert (shown.source, shown.user, shown.channel) == ("ack", USER_ID, GENERAL_CHANNEL_ID)
    assert fake.calls_to("chat.postMessage") == []


async def test_respond_posts_to_the_commands_response_url(fake: FakeSlack, app: AsyncApp) -> None:
    @app.command("/backrooms")
    async def backrooms(ack: Any, respond: Any) -> None:
        await ack()
        await respond("Run started in a thread.")

    await fake.send_slash_command(text="start")

    await fake.wait_for(lambda: len(fake.responses) == 1, STEP, "a response_url post")
    [posted] = fake.responses
    assert posted.url.startswith(f"{fake.base_url}/hooks/commands/")
    assert posted.body["text"] == "Run started in a thread."
    assert [e.source for e in fake.ephemerals] == ["response_url"]


async def test_block_action_reaches_the_action_listener(
    fake: FakeSlack, app: AsyncApp, client: AsyncWebClient
) -> None:
    pressed: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    @app.action("stop_run")
    async def stop_run(ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack()
        await pressed.put(body)
        await respond(replace_original=True, text="Run stopped.")

    root = await client.chat_postMessage(
        channel=GENERAL_CHANNEL_ID, text="Run 1", blocks=button_blocks()
    )
    envelope_id = await fake.send_block_action("stop_run", "run-1", message_ts=root["ts"])

    assert await fake.wait_ack(envelope_id, STEP) is None
    body = await asyncio.wait_for(pressed.get(), STEP)
    assert body["actions"][0]["value"] == "run-1"
    assert body["actions"][0]["block_id"] == "controls"
    assert body["user"]["id"] == USER_ID
    assert body["container"]["message_ts"] == root["ts"]
    await fake.wait_for(lambda: fake.responses != [], STEP, "respond(replace_original=True)")
    [message] = fake.messages(GENERAL_CHANNEL_ID)
    assert message["text"] == "Run stopped."
    assert message["edits"][0]["text"] == "Run 1"


async def test_trigger_id_opens_a_modal_and_ephemerals_are_recorded(
    fake: FakeSlack, app: AsyncApp
) -> None:
    modal = {
        "type": "modal",
        "title": {"type": "plain_text", "text": "New run"},
        "blocks": [],
    }

    @app.command("/backrooms")
    async def backrooms(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        await client.views_open(trigger_id=body["trigger_id"], view=modal)
        await client.chat_postEphemeral(channel=body["channel_id"], user=body["user_id"], text="hi")

    await fake.send_slash_command(text="new")

    await fake.wait_calls("chat.postEphemeral", 1, STEP)
    assert [v["title"]["text"] for v in fake.views] == ["New run"]
    assert [(e.source, e.text) for e in fake.ephemerals] == [("chat.postEphemeral", "hi")]


async def test_events_api_envelope_reaches_the_event_listener(
    fake: FakeSlack, app: AsyncApp
) -> None:
    mentioned: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any]) -> None:
        await mentioned.put(event)

    event = {
        "type": "app_mention",
        "user": USER_ID,
        "text": f"<@{BOT_USER_ID}> status",
        "ts": "1700000001.000100",
        "channel": GENERAL_CHANNEL_ID,
    }
    envelope_id = await fake.send_event(event)

    assert await fake.wait_ack(envelope_id, STEP) is None  # bolt acks events by itself
    assert (await asyncio.wait_for(mentioned.get(), STEP))["text"].endswith("status")


async def test_unmatched_envelope_gets_no_ack(fake: FakeSlack, app: AsyncApp) -> None:
    envelope_id = await fake.send_slash_command(command="/elsewhere")

    with pytest.raises(TimeoutError, match="no ack"):
        await fake.wait_ack(envelope_id, 0.5)


async def test_disconnect_message_makes_the_client_reconnect(
    fake: FakeSlack, app: AsyncApp
) -> None:
    @app.command("/backrooms")
    async def backrooms(ack: Any) -> None:
        await ack(text="still here")

    await fake.request_reconnect()
    await fake.wait_socket_connected(STEP, count=2)

    assert len(fake.calls_to("apps.connections.open")) == 2
    envelope_id = await fake.send_slash_command()
    assert await fake.wait_ack(envelope_id, STEP) == {"text": "still here"}
    assert fake.pings >= 1  # slack_sdk pings each new connection at once


async def test_server_side_close_makes_the_client_reconnect(fake: FakeSlack, app: AsyncApp) -> None:
    await fake.drop_sockets()

    await fake.wait_socket_connected(STEP, count=2)
    assert len(fake.calls_to("apps.connections.open")) == 2


async def test_unanswered_pings_make_the_client_reconnect(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    bolt = AsyncApp(client=client)
    # aiohttp's own heartbeat (heartbeat=ping_interval) drops a link whose pings go unanswered
    handler = AsyncSocketModeHandler(bolt, fake.app_token, ping_interval=0.3)
    await asyncio.wait_for(handler.connect_async(), STEP)
    try:
        fake.answer_pings = False
        await fake.wait_socket_connected(STEP, count=2)
    finally:
        fake.answer_pings = True
        await asyncio.wait_for(handler.close_async(), STEP)
    assert fake.pings >= 2


# --------------------------------------------------------------------------- Web API errors


async def test_not_in_channel_surfaces_as_slack_api_error(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    lobby = fake.add_channel("lobby", member=False)

    with pytest.raises(SlackApiError) as raised:
        await client.chat_postMessage(channel=lobby, text="hi")

    assert raised.value.response["error"] == "not_in_channel"
    joined = await client.conversations_join(channel=lobby)
    assert joined["channel"]["is_member"] is True
    posted = await client.chat_postMessage(channel="#lobby", text="hi")
    assert posted["channel"] == lobby


async def test_429_is_retried_after_retry_after_with_the_rate_limit_handler(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=1))
    fake.fail_next("chat.postMessage", status=429, retry_after=1)

    posted = await client.chat_postMessage(channel=GENERAL_CHANNEL_ID, text="turn 1")

    first, second = fake.calls_to("chat.postMessage")
    assert (first.status, first.error, second.ok) == (429, "ratelimited", True)
    assert second.at - first.at >= 1.0  # slack_sdk sleeps Retry-After plus up to 1 s of jitter
    assert [m["ts"] for m in fake.messages(GENERAL_CHANNEL_ID)] == [posted["ts"]]


async def test_429_without_a_retry_handler_raises_with_retry_after(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    fake.fail_next("chat.postMessage", status=429, retry_after=7)

    with pytest.raises(SlackApiError) as raised:
        await client.chat_postMessage(channel=GENERAL_CHANNEL_ID, text="turn 1")

    assert raised.value.response.status_code == 429
    assert raised.value.response.headers["Retry-After"] == "7"
    assert raised.value.response["error"] == "ratelimited"


async def test_channel_rate_model_limits_fast_posts(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    fake.enforce_channel_rate, fake.min_interval = True, 0.2
    await client.chat_postMessage(channel=GENERAL_CHANNEL_ID, text="one")

    with pytest.raises(SlackApiError):
        await client.chat_postMessage(channel=GENERAL_CHANNEL_ID, text="two")
    await asyncio.sleep(0.25)
    await client.chat_postMessage(channel=GENERAL_CHANNEL_ID, text="two")

    assert fake.rate_limited == 1
    assert [m["text"] for m in fake.messages(GENERAL_CHANNEL_ID)] == ["one", "two"]


async def test_injected_error_surfaces_once(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.fail_next("chat.update", "edit_window_closed")
    posted = await client.chat_postMessage(channel=GENERAL_CHANNEL_ID, text="v1")

    with pytest.raises(SlackApiError, match="edit_window_closed"):
        await client.chat_update(channel=GENERAL_CHANNEL_ID, ts=posted["ts"], text="v2")
    await client.chat_update(channel=GENERAL_CHANNEL_ID, ts=posted["ts"], text="v2")

    assert fake.messages(GENERAL_CHANNEL_ID)[0]["text"] == "v2"


async def test_missing_scope_names_needed_and_provided(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    fake.scopes.discard("chat:write")

    with pytest.raises(SlackApiError) as raised:
        await client.chat_postMessage(channel=GENERAL_CHANNEL_ID, text="hi")

    assert raised.value.response["error"] == "missing_scope"
    assert raised.value.response["needed"] == "chat:write"
    assert "chat:write" not in raised.value.response["provided"].split(",")


async def test_without_customize_scope_username_and_icon_are_dropped(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    fake.scopes.discard("chat:write.customize")

    await client.chat_postMessage(
        channel=GENERAL_CHANNEL_ID, text="hi", username="opus", icon_url=AVATAR
    )

    [message] = fake.messages(GENERAL_CHANNEL_ID)
    assert (message["username"], message["icon_url"]) == (None, None)
    assert message["requested"]["username"] == "opus"
    assert fake.calls_to("chat.postMessage")[0].params["username"] == "opus"


async def test_update_keeps_identity_and_history(fake: FakeSlack, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(
        channel=GENERAL_CHANNEL_ID, text="partial", username="opus", icon_emoji=":robot_face:"
    )
    updated = await client.chat_update(channel=GENERAL_CHANNEL_ID, ts=posted["ts"], text="full")

    assert updated["message"]["username"] == "opus"
    [message] = fake.messages(GENERAL_CHANNEL_ID)
    assert (message["text"], message["icon_emoji"]) == ("full", ":robot_face:")
    assert [e["text"] for e in message["edits"]] == ["partial"]


async def test_form_bodies_decode_like_json_ones(fake: FakeSlack, client: AsyncWebClient) -> None:
    form = {
        "channel": "general",
        "text": "hi",
        "blocks": json.dumps(button_blocks()),
        "unfurl_links": "0",
    }

    await client.api_call("chat.postMessage", data=form)

    [call] = fake.calls_to("chat.postMessage")
    assert call.params == form  # recorded as sent
    [message] = fake.messages(GENERAL_CHANNEL_ID)
    assert (message["blocks"], message["unfurl_links"]) == (button_blocks(), False)


async def test_bad_tokens_and_token_types_are_refused(fake: FakeSlack) -> None:
    wrong = AsyncWebClient(token="xoxb-nope", base_url=fake.api_url, timeout=int(STEP))
    app_level = AsyncWebClient(token=fake.app_token, base_url=fake.api_url, timeout=int(STEP))

    with pytest.raises(SlackApiError, match="invalid_auth"):
        await wrong.auth_test()
    with pytest.raises(SlackApiError, match="not_allowed_token_type"):
        await app_level.chat_postMessage(channel=GENERAL_CHANNEL_ID, text="hi")
    info = await app_level.apps_connections_open(app_token=fake.app_token)
    assert info["url"].startswith(f"ws://127.0.0.1:{fake.port}/socket/")


async def test_get_methods_and_users_info(fake: FakeSlack, client: AsyncWebClient) -> None:
    info = await client.conversations_info(channel=GENERAL_CHANNEL_ID)
    user = await client.users_info(user=USER_ID)
    auth = await client.auth_test()

    assert info["channel"]["name"] == "general"
    assert user["user"]["name"] == "tester"
    assert auth["user_id"] == BOT_USER_ID
    assert fake.calls_to("conversations.info")[0].http_method == "GET"
    assert "chat:write" in auth.headers["x-oauth-scopes"].split(",")


# --------------------------------------------------------------------------- HTTP mode


@pytest_asyncio.fixture
async def http_app(
    fake: FakeSlack, client: AsyncWebClient
) -> AsyncIterator[tuple[str, asyncio.Queue[dict[str, Any]]]]:
    """Bolt's own aiohttp server (app.web_app()) on an ephemeral loopback port."""
    bolt = AsyncApp(client=client, signing_secret=SIGNING_SECRET)
    seen: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    @bolt.command("/backrooms")
    async def backrooms(ack: Any, command: dict[str, Any]) -> None:
        await ack(text="starting")
        await seen.put(command)

    runner = web.AppRunner(bolt.web_app(path="/slack/events"), shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/slack/events", seen
    finally:
        await runner.cleanup()


async def _post(url: str, body: str, headers: dict[str, str]) -> tuple[int, str]:
    form = {"Content-Type": "application/x-www-form-urlencoded", **headers}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=STEP)) as session:
        async with session.post(url, data=body.encode(), headers=form) as response:
            return response.status, await response.text()


async def test_signed_slash_command_is_accepted_over_http(
    fake: FakeSlack, http_app: tuple[str, asyncio.Queue[dict[str, Any]]]
) -> None:
    url, seen = http_app
    body = slash_command_form(text="start opus", response_url=fake.response_url())

    status, text = await _post(url, body, sign_request(SIGNING_SECRET, body, int(time.time())))

    assert (status, text) == (200, "starting")
    command = await asyncio.wait_for(seen.get(), STEP)
    assert command["text"] == "start opus"


@pytest.mark.parametrize(
    ("secret", "age"), [("wrong-secret", 0), (SIGNING_SECRET, 301)], ids=["bad", "stale"]
)
async def test_bad_or_stale_signature_is_rejected_with_401(
    http_app: tuple[str, asyncio.Queue[dict[str, Any]]], secret: str, age: int
) -> None:
    url, seen = http_app
    body = slash_command_form(text="start opus")

    status, _ = await _post(url, body, sign_request(secret, body, int(time.time()) - age))

    assert status == 401
    assert seen.empty()


def test_sign_request_matches_slack_sdk_verifier() -> None:
    body, now = slash_command_form(text="x y"), int(time.time())
    headers = sign_request(SIGNING_SECRET, body, now)

    assert SignatureVerifier(SIGNING_SECRET).is_valid_request(body, headers)
