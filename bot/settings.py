"""The one typed settings object, read once at start from the environment and `.env`.

Secrets stay in `env` (a plain mapping handed to the providers); nothing here prints or logs them.
"""

from __future__ import annotations

import math
import os
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from backrooms_engine.errors import ConfigError
from backrooms_engine.store import StoreLocation, store_location

from .eventloop import loop_factory


@dataclass(frozen=True)
class DiscordSettings:
    token: str | None = field(default=None, repr=False)
    application_id: int | None = None  # for the invite URL; else read from the token
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


# What a command reads besides the paths every command has (db, logs, event loop). A command
# validates exactly the sections it reads, before it starts, and ignores the rest: `backrooms runs`
# never fails on a Discord setting.
SECTIONS = frozenset({"engine", "models", "templates", "web", "discord", "slack"})


@dataclass(frozen=True)
class Settings:
    env: Mapping[str, str] = field(repr=False)
    db_path: Path
    store: StoreLocation  # BACKROOMS_DATABASE_URL, BACKROOMS_DB or DATABASE_URL: use this one
    log_dir: Path
    models_file: Path | None
    templates_dir: Path | None
    retry_attempts: int
    retry_base_delay: float
    request_timeout: float
    read_timeout: float  # no byte for this long: a stalled stream, retried (providers/)
    max_runs: int
    max_runs_per_space: int
    chat_max_turns: int
    token_budget: int | None
    shutdown_deadline: float
    prompt_cache: bool = True  # BACKROOMS_PROMPT_CACHE: mark Claude requests' cache breakpoints
    budget_usd: float | None = None  # BACKROOMS_BUDGET_USD: every run's default dollar budget
    space_daily_usd: float | None = None  # BACKROOMS_SPACE_DAILY_USD: a space's cap per UTC day
    offline_delay: float = 0.03  # read by the offline provider from env; checked here first
    chat_lag: int = 1  # replies a chat may be behind before its run waits (BACKROOMS_CHAT_LAG)
    lease_seconds: float = 10.0  # a run's lease; renewed every third of it (ARCHITECTURE.md)
    public_url: str | None = None  # the web viewer's address, for links in chat
    web_token: str | None = field(default=None, repr=False)
    port: int | None = None
    host: str | None = None  # BACKROOMS_HOST: where the web viewer listens (bot/web/surface.py)
    event_loop: str = "auto"  # uvloop when installed; "asyncio" opts out (bot/eventloop.py)
    discord: DiscordSettings = field(default_factory=DiscordSettings)
    slack: SlackSettings = field(default_factory=SlackSettings)

    @classmethod
    def environment(
        cls, environ: Mapping[str, str] | None = None, *, dotenv: Path | None = None
    ) -> dict[str, str]:
        """The variables settings are read from: the environment wins over `.env` (read from the
        working directory)."""
        file_values = dotenv_values(dotenv or Path.cwd() / ".env")
        env = {k: v for k, v in file_values.items() if v is not None}
        env.update(os.environ if environ is None else environ)
        return env

    @classmethod
    def load(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        dotenv: Path | None = None,
        reads: Iterable[str] = SECTIONS,
    ) -> Settings:
        return cls.from_mapping(cls.environment(environ, dotenv=dotenv), reads=reads)

    @classmethod
    def from_mapping(cls, env: Mapping[str, str], *, reads: Iterable[str] = SECTIONS) -> Settings:
        """Only the sections in `reads` are read (and so checked); the others keep defaults."""
        wanted = set(reads)
        if not wanted <= SECTIONS:
            raise ValueError(f"unknown settings sections {sorted(wanted - SECTIONS)}")
        values: dict[str, Any] = {
            "env": dict(env),
            "db_path": Path(env.get("BACKROOMS_DB") or "backrooms.db"),
            "store": store_location(env),
            "log_dir": Path(env.get("BACKROOMS_LOG_DIR") or "BackroomsLogs"),
            "event_loop": _event_loop(env),
            "models_file": _models_file(env) if "models" in wanted else None,
            "templates_dir": _templates_dir(env) if "templates" in wanted else None,
            **(_engine(env) if "engine" in wanted else _ENGINE_DEFAULTS),
        }
        if "web" in wanted:
            values.update(_web(env))
        if "discord" in wanted:
            values["discord"] = _discord(env)
        if "slack" in wanted:
            values["slack"] = _slack(env)
        return cls(**values)


_ENGINE_DEFAULTS: dict[str, Any] = {
    "retry_attempts": 6,
    "retry_base_delay": 1.0,
    "request_timeout": 600.0,
    "read_timeout": 300.0,
    "max_runs": 20,
    "max_runs_per_space": 3,
    "chat_max_turns": 50,
    "token_budget": None,
    "shutdown_deadline": 20.0,
    "offline_delay": 0.03,
    "chat_lag": 1,
    "lease_seconds": 10.0,
    "prompt_cache": True,
    "budget_usd": None,
    "space_daily_usd": None,
}


def _engine(env: Mapping[str, str]) -> dict[str, Any]:
    d = _ENGINE_DEFAULTS
    return {
        "retry_attempts": _int(env, "BACKROOMS_RETRY_ATTEMPTS", d["retry_attempts"], minimum=1),
        "retry_base_delay": _float(env, "BACKROOMS_RETRY_BASE_DELAY", d["retry_base_delay"]),
        "request_timeout": _float(env, "BACKROOMS_REQUEST_TIMEOUT", d["request_timeout"]),
        "read_timeout": _float(env, "BACKROOMS_READ_TIMEOUT", d["read_timeout"]),
        "max_runs": _int(env, "BACKROOMS_MAX_RUNS", d["max_runs"], minimum=1),
        "max_runs_per_space": _int(env, "BACKROOMS_MAX_RUNS_PER_SPACE", 3, minimum=1),
        "chat_max_turns": _int(env, "BACKROOMS_CHAT_MAX_TURNS", d["chat_max_turns"], minimum=1),
        "token_budget": _int(env, "BACKROOMS_TOKEN_BUDGET", 0, minimum=0) or None,
        "shutdown_deadline": _float(env, "BACKROOMS_SHUTDOWN_DEADLINE", 20.0),
        "offline_delay": _float(env, "BACKROOMS_OFFLINE_DELAY", d["offline_delay"]),
        "chat_lag": _int(env, "BACKROOMS_CHAT_LAG", d["chat_lag"], minimum=0),
        "lease_seconds": _lease_seconds(env),
        "prompt_cache": _bool(env, "BACKROOMS_PROMPT_CACHE", d["prompt_cache"]),
        "budget_usd": _dollars(env, "BACKROOMS_BUDGET_USD"),
        "space_daily_usd": _dollars(env, "BACKROOMS_SPACE_DAILY_USD"),
    }


def _web(env: Mapping[str, str]) -> dict[str, Any]:
    return {
        "public_url": _url(env, "BACKROOMS_PUBLIC_URL"),
        "web_token": env.get("BACKROOMS_WEB_TOKEN") or None,
        "port": _int(env, "PORT", 0, minimum=0, maximum=65535) or None,
        "host": (env.get("BACKROOMS_HOST") or "").strip() or None,
    }


def _discord(env: Mapping[str, str]) -> DiscordSettings:
    return DiscordSettings(
        token=env.get("DISCORD_TOKEN") or None,
        application_id=_snowflake(env, "DISCORD_APPLICATION_ID"),
        guild_ids=_ids(env, "DISCORD_GUILD_IDS"),
        api_base_url=_url(env, "DISCORD_API_BASE_URL"),
        gateway_url=_url(env, "DISCORD_GATEWAY_URL", schemes=("ws", "wss")),
        allowed_guilds=frozenset(_ids(env, "DISCORD_ALLOWED_GUILDS")),
        allowed_channels=frozenset(_ids(env, "DISCORD_ALLOWED_CHANNELS")),
        starter_role=env.get("DISCORD_STARTER_ROLE") or None,
        streaming=_bool(env, "DISCORD_STREAMING", True),
    )


def _slack(env: Mapping[str, str]) -> SlackSettings:
    return SlackSettings(
        bot_token=_token(env, "SLACK_BOT_TOKEN", "xoxb-", "the Bot User OAuth Token"),
        app_token=_token(env, "SLACK_APP_TOKEN", "xapp-", "an app-level token"),
        signing_secret=env.get("SLACK_SIGNING_SECRET") or None,
        api_url=_url(env, "SLACK_API_URL"),
        http_port=_int(env, "SLACK_HTTP_PORT", 0, minimum=0, maximum=65535) or None,
        admins=frozenset(env.get("SLACK_ADMINS", "").replace(",", " ").split()),
        streaming=_bool(env, "SLACK_STREAMING", False),
    )


def _models_file(env: Mapping[str, str]) -> Path | None:
    if env.get("BACKROOMS_MODELS"):
        path = Path(env["BACKROOMS_MODELS"])
        if not path.is_file():
            raise ConfigError(f"BACKROOMS_MODELS names {path}, which is not a file")
        return path
    local = Path("models.toml")
    return local if local.is_file() else None


def _event_loop(env: Mapping[str, str]) -> str:
    choice = (env.get("BACKROOMS_EVENT_LOOP") or "auto").strip().lower()
    loop_factory(choice)  # raises naming the setting and the choices
    return choice


def _templates_dir(env: Mapping[str, str]) -> Path | None:
    if not env.get("BACKROOMS_TEMPLATES"):
        return None
    path = Path(env["BACKROOMS_TEMPLATES"])
    if not path.is_dir():
        raise ConfigError(f"BACKROOMS_TEMPLATES names {path}, which is not a folder")
    return path


def _int(
    env: Mapping[str, str], name: str, default: int, *, minimum: int = 0, maximum: int | None = None
) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be at most {maximum}, got {value}")
    return value


def _url(
    env: Mapping[str, str], name: str, *, schemes: tuple[str, ...] = ("http", "https")
) -> str | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    parts = urllib.parse.urlsplit(raw)
    if parts.scheme not in schemes or not parts.netloc:
        accepted = " or ".join(f"{s}://" for s in schemes)
        raise ConfigError(f"{name} must be a URL starting with {accepted}, got {raw!r}")
    return raw.rstrip("/") if name == "BACKROOMS_PUBLIC_URL" else raw


def _snowflake(env: Mapping[str, str], name: str) -> int | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise ConfigError(f"{name} must be a numeric Discord id, got {raw!r}")
    return int(raw)


def _token(env: Mapping[str, str], name: str, prefix: str, what: str) -> str | None:
    raw = env.get(name) or None
    if raw is not None and not raw.startswith(prefix):
        # Only the prefix is shown: the rest of a token is a secret.
        shown = raw[:5] + "..." if len(raw) > 5 else "a value"
        raise ConfigError(f"{name} must be {what}, starting with {prefix}; got {shown}")
    return raw


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number of seconds, got {raw!r}")
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {raw}")
    return value


def _lease_seconds(env: Mapping[str, str]) -> float:
    value = _float(env, "BACKROOMS_LEASE_SECONDS", 10.0)
    if value < 0.3:  # renewed every third of it: below that, a busy loop could not keep up
        raise ConfigError(f"BACKROOMS_LEASE_SECONDS must be at least 0.3, got {value}")
    return value


def _dollars(env: Mapping[str, str], name: str) -> float | None:
    """An amount in USD such as 0.50 (a leading $ is allowed); unset or empty: none."""
    raw = env.get(name, "").strip().removeprefix("$")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(
            f"{name} must be an amount in US dollars such as 0.50, got {env[name]!r}"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be more than 0 dollars, got {env[name]!r}")
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
