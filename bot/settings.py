"""The one typed settings object, read once at start from the environment and `.env`.

Secrets stay in `env` (a plain mapping handed to the providers); nothing here prints or logs them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

from backrooms_engine.errors import ConfigError


@dataclass(frozen=True)
class DiscordSettings:
    token: str | None = field(default=None, repr=False)
    guild_ids: tuple[int, ...] = ()  # instant command sync to these servers (testing)
    api_base_url: str | None = None  # replaces discord.py's REST base (a proxy, a test fake)
    gateway_url: str | None = None
    allowed_guilds: frozenset[int] = frozenset()  # empty: every server the bot is in
    allowed_channels: frozenset[int] = frozenset()  # empty: every channel
    starter_role: str | None = None  # a role name or id needed to start runs
    streaming: bool = True  # edit messages as text streams (a server can turn it off)


@dataclass(frozen=True)
class SlackSettings:
    bot_token: str | None = field(default=None, repr=False)
    app_token: str | None = field(default=None, repr=False)  # Socket Mode
    signing_secret: str | None = field(default=None, repr=False)  # HTTP mode
    api_url: str | None = None
    http_port: int | None = None  # HTTP mode when set (with a signing secret)
    admins: frozenset[str] = frozenset()  # user ids allowed to stop any run
    streaming: bool = False  # chat.update is tier 3 and may drop the custom username


@dataclass(frozen=True)
class Settings:
    env: Mapping[str, str] = field(repr=False)
    db_path: Path
    log_dir: Path
    models_file: Path | None
    templates_dir: Path | None
    retry_attempts: int
    retry_base_delay: float
    request_timeout: float
    max_runs: int
    max_runs_per_space: int
    chat_max_turns: int
    token_budget: int | None
    shutdown_deadline: float
    lease_seconds: float = 10.0  # a run's lease; renewed every third of it (ARCHITECTURE.md)
    public_url: str | None = None  # the web viewer's address, for links in chat
    web_token: str | None = field(default=None, repr=False)
    port: int | None = None
    event_loop: str = "auto"  # uvloop when installed; "asyncio" opts out (bot/eventloop.py)
    discord: DiscordSettings = field(default_factory=DiscordSettings)
    slack: SlackSettings = field(default_factory=SlackSettings)

    @classmethod
    def load(
        cls, environ: Mapping[str, str] | None = None, *, dotenv: Path | None = None
    ) -> Settings:
        """Environment variables win over `.env` (read from the working directory)."""
        file_values = dotenv_values(dotenv or Path.cwd() / ".env")
        env = {k: v for k, v in file_values.items() if v is not None}
        env.update(os.environ if environ is None else environ)
        return cls.from_mapping(env)

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> Settings:
        return cls(
            env=dict(env),
            db_path=Path(env.get("BACKROOMS_DB") or "backrooms.db"),
            log_dir=Path(env.get("BACKROOMS_LOG_DIR") or "BackroomsLogs"),
            models_file=_models_file(env),
            templates_dir=Path(env["BACKROOMS_TEMPLATES"])
            if env.get("BACKROOMS_TEMPLATES")
            else None,
            retry_attempts=_int(env, "BACKROOMS_RETRY_ATTEMPTS", 6, minimum=1),
            retry_base_delay=_float(env, "BACKROOMS_RETRY_BASE_DELAY", 1.0),
            request_timeout=_float(env, "BACKROOMS_REQUEST_TIMEOUT", 600.0),
            max_runs=_int(env, "BACKROOMS_MAX_RUNS", 20, minimum=1),
            max_runs_per_space=_int(env, "BACKROOMS_MAX_RUNS_PER_SPACE", 3, minimum=1),
            chat_max_turns=_int(env, "BACKROOMS_CHAT_MAX_TURNS", 50, minimum=1),
            token_budget=_int(env, "BACKROOMS_TOKEN_BUDGET", 0, minimum=0) or None,
            shutdown_deadline=_float(env, "BACKROOMS_SHUTDOWN_DEADLINE", 20.0),
            lease_seconds=_lease_seconds(env),
            public_url=(env.get("BACKROOMS_PUBLIC_URL") or "").rstrip("/") or None,
            web_token=env.get("BACKROOMS_WEB_TOKEN") or None,
            port=_int(env, "PORT", 0, minimum=0) or None,
            event_loop=(env.get("BACKROOMS_EVENT_LOOP") or "auto").strip().lower(),
            discord=DiscordSettings(
                token=env.get("DISCORD_TOKEN") or None,
                guild_ids=_ids(env, "DISCORD_GUILD_IDS"),
                api_base_url=env.get("DISCORD_API_BASE_URL") or None,
                gateway_url=env.get("DISCORD_GATEWAY_URL") or None,
                allowed_guilds=frozenset(_ids(env, "DISCORD_ALLOWED_GUILDS")),
                allowed_channels=frozenset(_ids(env, "DISCORD_ALLOWED_CHANNELS")),
                starter_role=env.get("DISCORD_STARTER_ROLE") or None,
                streaming=_bool(env, "DISCORD_STREAMING", True),
            ),
            slack=SlackSettings(
                bot_token=env.get("SLACK_BOT_TOKEN") or None,
                app_token=env.get("SLACK_APP_TOKEN") or None,
                signing_secret=env.get("SLACK_SIGNING_SECRET") or None,
                api_url=env.get("SLACK_API_URL") or None,
                http_port=_int(env, "SLACK_HTTP_PORT", 0, minimum=0) or None,
                admins=frozenset(env.get("SLACK_ADMINS", "").replace(",", " ").split()),
                streaming=_bool(env, "SLACK_STREAMING", False),
            ),
        )


def _models_file(env: Mapping[str, str]) -> Path | None:
    if env.get("BACKROOMS_MODELS"):
        path = Path(env["BACKROOMS_MODELS"])
        if not path.is_file():
            raise ConfigError(f"BACKROOMS_MODELS names {path}, which is not a file")
        return path
    local = Path("models.toml")
    return local if local.is_file() else None


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {value}")
    return value


def _lease_seconds(env: Mapping[str, str]) -> float:
    value = _float(env, "BACKROOMS_LEASE_SECONDS", 10.0)
    if value < 0.3:  # renewed every third of it: below that, a busy loop could not keep up
        raise ConfigError(f"BACKROOMS_LEASE_SECONDS must be at least 0.3, got {value}")
    return value


def _ids(env: Mapping[str, str], name: str) -> tuple[int, ...]:
    words = env.get(name, "").replace(",", " ").split()
    try:
        return tuple(int(w) for w in words)
    except ValueError:
        raise ConfigError(
            f"{name} must be numeric ids separated by commas, got {env[name]!r}"
        ) from None


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in _TRUE | _FALSE:
        raise ConfigError(f"{name} must be true or false, got {env[name]!r}")
    return raw in _TRUE
