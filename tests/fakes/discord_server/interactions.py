"""REST: answering interactions. The first answer (``/interactions/{id}/{token}/callback``) is
due within ``interaction_ack_deadline`` (a late one is ``404 10062``, a second one ``400 40060``);
followups and edits of the original go through the application's webhook
(``/webhooks/{application id}/{token}``) while the token lives (``interaction_token_lifetime``).
Ephemeral messages stay off the channel."""

from __future__ import annotations

import copy
import re
import time
from typing import Any

from . import validation
from .errors import ApiError, form_error, unknown_message, unknown_webhook
from .messages import Messages
from .records import InteractionResponse, InteractionState, Message, truthy
from .routing import Reply, Request, route
from .world import World

EPHEMERAL, LOADING = 1 << 6, 1 << 7
# Which callback types each interaction type accepts (2 command, 3 component, 4 autocomplete,
# 5 modal submit).
ALLOWED_CALLBACKS = {2: {4, 5, 9}, 3: {4, 5, 6, 7, 9}, 4: {8}, 5: {4, 5, 6, 7}}


class Interactions:
    def __init__(self, world: World, messages: Messages) -> None:
        self.world = world
        self.messages = messages

    @route("POST", "/interactions/{id}/{token}/callback", "interaction_callback", auth=False)
    async def callback(self, req: Request, m: re.Match[str]) -> Any:
        w = self.world
        state = w.interactions.get(int(m.group(1)))
        if state is None or state.record.token != m.group(2):
            raise ApiError(404, 10062, "Unknown interaction")
        if state.responses:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        if time.monotonic() - state.created > w.interaction_ack_deadline:
            raise ApiError(404, 10062, "Unknown interaction")
        body = req.body if isinstance(req.body, dict) else {}
        kind, data = body.get("type"), body.get("data")
        _check_callback_type(state.record.type, kind, data)
        assert isinstance(kind, int)  # _check_callback_type let only known types through
        message = None
        if kind in (4, 5):
            message = self._original(state, kind, data or {}, req.files)
        elif kind == 7 and state.record.payload.get("message"):
            target_id = int(state.record.payload["message"]["id"])
            target = w.find_message(state.record.channel_id, target_id)
            await self.messages.edit(target, data or {})
        state.responses.append(InteractionResponse(kind, copy.deepcopy(data), time.monotonic()))
        if not truthy(req.query.get("with_response")):
            return Reply(None, 204)
        return self._callback_body(state, kind, message)

    def _original(
        self, state: InteractionState, kind: int, data: dict[str, Any], files: tuple[str, ...]
    ) -> Message:
        flags = int(data.get("flags") or 0)
        if kind == 4:
            validation.message(data, files)
        else:
            flags |= LOADING  # the "is thinking..." placeholder
        message = self._app_message(state, {**data, "flags": flags}, files)
        state.original_id = int(message.payload["id"])
        return message

    def _app_message(
        self, state: InteractionState, data: dict[str, Any], files: tuple[str, ...]
    ) -> Message:
        """A message sent via the interaction webhook; an ephemeral one stays off the channel."""
        w, record = self.world, state.record
        message = self.messages.new(
            record.channel_id, data, files, author_id=w.bot_user_id, kind=20
        )
        message.payload |= {
            "webhook_id": str(w.application_id),
            "application_id": str(w.application_id),
            "interaction_metadata": {
                "id": str(record.id),
                "type": record.type,
                "user": w.public_user(record.user_id),
                "authorizing_integration_owners": {"0": str(record.guild_id)},
                "name": record.payload["data"].get("name", ""),
                "command_type": 1,
            },
        }
        if message.payload["flags"] & EPHEMERAL:
            w.channel_messages[record.channel_id].remove(message)
            w.ephemeral[int(message.payload["id"])] = message
        else:
            w.schedule(self.messages.created(message))
        return message

    def _callback_body(
        self, state: InteractionState, kind: int, message: Message | None
    ) -> dict[str, Any]:
        flags = message.payload["flags"] if message else 0
        body: dict[str, Any] = {
            "interaction": {
                "id": str(state.record.id),
                "type": state.record.type,
                "response_message_id": message.payload["id"] if message else None,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(flags & EPHEMERAL),
            },
            "resource": {"type": kind},
        }
        if message is not None:
            body["resource"]["message"] = self.messages.for_response(message)
        return body

    # -- the application's webhook: followups and the original response ------------------------

    async def webhook(self, req: Request, token: str, message_ref: str | None) -> Any:
        """``/webhooks/{application id}/{token}[/messages/{ref}]``, which the webhooks resource
        hands over when the id is the application's."""
        state = self._by_token(token)
        if message_ref is None:  # POST: a followup
            if not state.responses:
                raise unknown_webhook()
            body = validation.message(req.body, req.files)
            message = self._app_message(state, body, req.files)
            state.followup_ids.append(int(message.payload["id"]))
            return self.messages.for_response(message)
        message = self._lookup(state, message_ref)
        if req.method == "GET":
            return self.messages.for_response(message)
        if req.method == "DELETE":
            self.messages.remove(message)
            return Reply(None, 204)
        body = dict(req.body or {})
        if message.payload["flags"] & LOADING:  # the first edit replaces the thinking placeholder
            body["flags"] = message.payload["flags"] & ~LOADING
        return await self.messages.edit(message, body)

    def _by_token(self, token: str) -> InteractionState:
        w = self.world
        interaction_id = w.tokens.get(token)
        if interaction_id is None:
            raise unknown_webhook()
        state = w.interactions[interaction_id]
        if time.monotonic() - state.created > w.interaction_token_lifetime:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        return state

    def _lookup(self, state: InteractionState, message_ref: str) -> Message:
        message_id = state.original_id if message_ref == "@original" else int(message_ref)
        if message_id is None or (
            message_ref != "@original" and message_id not in state.followup_ids
        ):
            raise unknown_message()
        if message_id in self.world.ephemeral:
            return self.world.ephemeral[message_id]
        return self.world.find_message(state.record.channel_id, message_id)


def _check_callback_type(interaction_type: int, kind: Any, data: Any) -> None:
    if kind not in ALLOWED_CALLBACKS[interaction_type]:
        raise ApiError(400, 40043, "Interaction response type not allowed for this interaction.")
    if kind == 8:
        choices = (data or {}).get("choices")
        if not isinstance(choices, list) or len(choices) > 25:
            raise form_error(
                "data.choices", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
            )
        for choice in choices:
            if not 1 <= len(str(choice.get("name", ""))) <= 100:
                raise form_error(
                    "data.choices.name",
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 100 in length.",
                )
