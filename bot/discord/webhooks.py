"""One webhook per channel, reused by every run posted there.

Threads own no webhooks: a run's thread is reached through its parent channel's webhook with
`thread=`. Discord allows 15 webhooks per channel, so the bot makes one and keeps it; after a restart
the stored id and token rebuild it without a request (`Webhook.partial`). A webhook someone deleted
(10015 Unknown Webhook) is recreated once.
"""

from __future__ import annotations

import asyncio
import logging

import discord

log = logging.getLogger(__name__)

WEBHOOK_NAME = "backrooms relay"


class WebhookPool:
    def __init__(self, client: discord.Client):
        self._client = client
        self._hooks: dict[int, discord.Webhook] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    def adopt(self, channel_id: int, webhook_id: int, token: str) -> discord.Webhook:
        """A webhook known from the store (after a restart)."""
        hook = self._hooks.get(channel_id)
        if hook is None or hook.id != webhook_id:
            hook = discord.Webhook.partial(webhook_id, token, client=self._client)
            self._hooks[channel_id] = hook
        return hook

    async def get(self, channel_id: int) -> discord.Webhook:
        async with self._lock(channel_id):
            hook = self._hooks.get(channel_id)
            if hook is None:
                hook = self._hooks[channel_id] = await self._find_or_create(channel_id)
            return hook

    async def recreate(self, channel_id: int, stale: discord.Webhook) -> discord.Webhook:
        async with self._lock(channel_id):
            hook = self._hooks.get(channel_id)
            if hook is not None and hook.id != stale.id:
                return hook  # another run already replaced it
            log.warning("webhook of channel %s is gone; making a new one", channel_id)
            channel = await self._channel(channel_id)
            hook = await channel.create_webhook(name=WEBHOOK_NAME, reason="backrooms relay posts")
            self._hooks[channel_id] = hook
            return hook

    async def _find_or_create(self, channel_id: int) -> discord.Webhook:
        channel = await self._channel(channel_id)
        me = self._client.user
        for hook in await channel.webhooks():
            if (
                hook.name == WEBHOOK_NAME
                and hook.token
                and hook.user
                and me
                and hook.user.id == me.id
            ):
                return hook
        return await channel.create_webhook(name=WEBHOOK_NAME, reason="backrooms relay posts")

    async def _channel(self, channel_id: int) -> discord.TextChannel | discord.ForumChannel:
        channel = self._client.get_channel(channel_id) or await self._client.fetch_channel(
            channel_id
        )
        assert isinstance(channel, discord.TextChannel | discord.ForumChannel)
        return channel

    def _lock(self, channel_id: int) -> asyncio.Lock:
        return self._locks.setdefault(channel_id, asyncio.Lock())
