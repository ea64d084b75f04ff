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
