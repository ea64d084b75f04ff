"""Every Discord persona has a face with no configuration: our pictures at BACKROOMS_PUBLIC_URL,
else one of Discord's default avatars per seat; a model's own avatar_url always wins. Asserted on
what the emulator received."""

from __future__ import annotations

from tests.bot.discord_world import World, discord_world
from tests.bot.slack_harness import CLAUDE_ICON, MODELS_TOML

URL = "https://relay.example"


async def avatars(w: World, run_id: int, models: str) -> list[str | None]:
    await w.followup_text(await w.command("start", {"models": models, "max_turns": 1}))
    await w.run_ended(run_id)
    return [c.json.get("avatar_url") for c in w.fake.webhook_executes(await w.thread_of(run_id))]


async def test_with_a_public_url_posts_point_at_our_pictures_and_the_users_wins(
    model_server, tmp_path
):
    models = tmp_path / "models.toml"
    models.write_text(MODELS_TOML, encoding="utf-8")
    extra = {"BACKROOMS_PUBLIC_URL": URL, "BACKROOMS_MODELS": str(models)}
    async with discord_world(model_server, tmp_path, **extra) as w:
        twins = await avatars(w, 1, "gpt4o gpt4o")
        mixed = await avatars(w, 2, "opus gpt4o")
    assert twins == [f"{URL}/faces/openai-0.png", f"{URL}/faces/openai-1.png"]
    assert mixed == [CLAUDE_ICON, f"{URL}/faces/openai-0.png"]


async def test_without_a_public_url_each_seat_wears_another_default_avatar(model_server, tmp_path):
    models = tmp_path / "models.toml"
    models.write_text(MODELS_TOML, encoding="utf-8")
    async with discord_world(model_server, tmp_path, BACKROOMS_MODELS=str(models)) as w:
        shown = await avatars(w, 1, "opus gpt4o opus council")
    assert shown == [
        CLAUDE_ICON,  # the user's own
        "https://cdn.discordapp.com/embed/avatars/1.png",
        CLAUDE_ICON,
    ]
