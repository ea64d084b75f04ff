"""The emulator as a test sees it: start and close it, build its world, inject interactions and
faults, and read what it received."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import re
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from backrooms_engine.lifecycle import StartsOnEntry

from .applications import Applications
from .channels import Channels
from .client import configure_discord_py
from .constants import API_PREFIX, THREAD_TYPES
from .faults import Faults, RateLimits
from .gateway import Gateway
from .guilds import Guilds
from .injection import Injector
from .interactions import Interactions
from .messages import Messages
from .records import Call, Interaction, InteractionResponse, InteractionState
from .routing import Router
from .threads import Threads
from .webhooks import Webhooks
from .world import World


class FakeDiscord(World, StartsOnEntry):
    """The emulator. Every wait it offers takes a timeout; every socket closes on :meth:`close`."""

    def __init__(self, *, host: str = "127.0.0.1", token: str | None = None) -> None:
        super().__init__(host=host, token=token)
        self._faults = Faults()
        self._gateway = Gateway(self)
        self._injector = Injector(self)
        messages, limits = Messages(self), RateLimits(self)
        threads = Threads(self, messages, limits)
        interactions = Interactions(self, messages)
        resources = [
            Applications(self),
            Guilds(self),
            Channels(self, messages, threads, limits),
            threads,
            interactions,
            Webhooks(self, messages, threads, interactions, limits),
        ]
        self._router = Router(self, self._faults, resources)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway.handle)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._router.handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, self.host, 0).start()
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=2.0)
        for ws in list(self.sockets):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(code=1001, message=b"fake shutting down"), 2.0)
        runner, self._runner = self._runner, None
        if runner is not None:
            await asyncio.wait_for(runner.cleanup(), 5.0)

    def patch_client(self) -> contextlib.AbstractContextManager[None]:
        return configure_discord_py(self)

    # -- observation ----------------------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        """Every REST request answered so far, in arrival order."""
        return [c for c in self.call_log if c is not None]

    def find_calls(
        self, method: str | None = None, path_regex: str | None = None, *, route: str | None = None
    ) -> list[Call]:
        pattern = re.compile(path_regex) if path_regex else None
        return [
            c
            for c in self.calls
            if (method is None or c.method == method)
            and (pattern is None or pattern.search(c.path))
            and (route is None or c.route == route)
        ]

    async def wait_for_call(self, predicate: Callable[[Call], bool], seconds: float = 5.0) -> Call:
        """The first recorded call (past or future) that satisfies ``predicate``."""

        def found() -> Call | None:
            return next((c for c in self.calls if predicate(c)), None)

        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: found() is not None), seconds)
        call = found()
        assert call is not None
        return call

    def messages(self, channel_id: int) -> list[dict[str, Any]]:
        """The channel's (or thread's) live messages, edits applied, each with an ``edits`` list."""
        return [
            {**copy.deepcopy(m.payload), "edits": copy.deepcopy(m.edits)}
            for m in self.channel_messages.get(channel_id, [])
        ]

    @property
    def threads(self) -> dict[int, dict[str, Any]]:
        return {i: copy.deepcopy(c) for i, c in self.channels.items() if c["type"] in THREAD_TYPES}

    @property
    def webhooks(self) -> dict[int, dict[str, Any]]:
        return copy.deepcopy(self.hooks)

    def commands(self, guild_id: int | None = None) -> list[dict[str, Any]]:
        return copy.deepcopy(self.command_sets.get(guild_id, []))

    def webhook_executes(
        self, thread_id: int | None = None, *, include_failed: bool = False
    ) -> list[Call]:
        return self._webhook_calls("execute_webhook", thread_id, include_failed)

    def webhook_edits(
        self, thread_id: int | None = None, *, include_failed: bool = False
    ) -> list[Call]:
        return self._webhook_calls("edit_webhook_message", thread_id, include_failed)

    def _webhook_calls(self, route: str, thread_id: int | None, include_failed: bool) -> list[Call]:
        return [
            c
            for c in self.calls
            if c.route == route
            and (include_failed or 200 <= c.status < 300)
            and (thread_id is None or c.query.get("thread_id") == str(thread_id))
        ]

    def interaction_state(self, interaction_id: int) -> InteractionState:
        return self.interactions[interaction_id]

    def interaction_responses(self, interaction_id: int) -> list[InteractionResponse]:
        return list(self.interactions[interaction_id].responses)

    async def wait_for_response(
        self, interaction_id: int, seconds: float = 5.0
    ) -> InteractionResponse:
        state = self.interactions[interaction_id]
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: bool(state.responses)), seconds)
        return state.responses[0]

    # -- faults ---------------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        code: int = 0,
        message: str | None = None,
        retry_after: float | None = None,
        is_global: bool = False,
        count: int = 1,
    ) -> None:
        """The next ``count`` requests matching ``method`` and ``path_regex`` (searched in the path
        after ``/api/v10``) fail. A 429 is shaped like Discord's (Via, Retry-After, X-RateLimit-*,
        body ``retry_after``/``global``, scope "user")."""
        self._faults.add(
            method,
            path_regex,
            status,
            code=code,
            message=message,
            retry_after=retry_after,
            is_global=is_global,
            count=count,
        )

    # -- the gateway and interactions -----------------------------------------------------------

    async def wait_ready(self, seconds: float = 5.0) -> None:
        """Until a client identified and received READY plus one GUILD_CREATE per guild."""
        await asyncio.wait_for(self.ready.wait(), seconds)

    async def drop_gateway(self, code: int = 4000) -> None:
        """Close every gateway socket (4000 is resumable; discord.py reconnects and RESUMEs)."""
        for ws in list(self.sockets):
            await asyncio.wait_for(ws.close(code=code), 2.0)

    async def send_interaction(
        self,
        guild_id: int,
        channel_id: int,
        user_id: int,
        command: str,
        subcommand: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Interaction:
        """Dispatch an APPLICATION_COMMAND interaction for a command the bot registered."""
        return await self._injector.command(
            guild_id, channel_id, user_id, command, subcommand, options or {}
        )

    async def send_autocomplete(
        self,
        guild_id: int,
        channel_id: int,
        user_id: int,
        command: str,
        subcommand: str | None,
        options: Mapping[str, Any],
        focused: str,
    ) -> Interaction:
        return await self._injector.command(
            guild_id, channel_id, user_id, command, subcommand, options, focused=focused
        )

    async def send_component(
        self,
        guild_id: int,
        channel_id: int,
        user_id: int,
        message_id: int,
        custom_id: str,
        *,
        component_type: int = 2,
        values: list[str] | None = None,
    ) -> Interaction:
        """A click on a button (or a select, with ``values``) of a message in ``channel_id``."""
        return await self._injector.component(
            guild_id,
            channel_id,
            user_id,
            message_id,
            custom_id,
            component_type=component_type,
            values=values,
        )
