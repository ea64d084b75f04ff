"""Shared fixtures. Every outside service is a fake of our own on 127.0.0.1; no test reads a real
key or reaches the network."""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path

import pytest

from backrooms_engine.registry import load_registry
from tests.fakes.model_server import FakeModelServer

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
UPSTREAM_TEMPLATES = SHARED / "upstream-templates"

# Modules whose async tests run on uvloop as well as on asyncio's loop: the SDKs' HTTP runs on
# the loop's own sockets, and the service runs on uvloop where it is installed.
_ON_BOTH_LOOPS = {"test_http.py"}


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop
    }
    if item.path.name in _ON_BOTH_LOOPS and importlib.util.find_spec("uvloop") is not None:
        import uvloop

        factories["uvloop"] = uvloop.new_event_loop
    return factories


_SCRUB_PREFIXES = (
    "ANTHROPIC_",
    "OPENAI_",
    "OPENROUTER_",
    "OLLAMA_",
    "VLLM_",
    "DEEPSEEK_",
    "GEMINI_",
    "WORLD_INTERFACE_",
    "BACKROOMS_",
    "DISCORD_",
    "SLACK_",
)
# DATABASE_URL names a store when no BACKROOMS_ setting does: a developer's must not reach tests.
_SCRUB_NAMES = ("DATABASE_URL",)
_PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No real key, no proxy (slack_sdk ignores NO_PROXY), and a scratch working directory so a
    developer's .env or models.toml never leaks into a test."""
    for name in list(os.environ):
        if name.startswith(_SCRUB_PREFIXES) or name in _PROXIES or name in _SCRUB_NAMES:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("BACKROOMS_OFFLINE_DELAY", "0")
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A URL of an empty schema of its own on the machine's PostgreSQL (tests/postgres.py)."""
    from tests.postgres import fresh_schema

    async with fresh_schema() as url:
        yield url


@pytest.fixture
async def model_server() -> AsyncIterator[FakeModelServer]:
    async with FakeModelServer() as server:
        yield server


def fake_env(server: FakeModelServer, tmp_path: Path) -> dict[str, str]:
    """An environment whose every provider points at the fake server, with dummy keys."""
    env = {
        "BACKROOMS_DB": str(tmp_path / "backrooms.db"),
        "BACKROOMS_LOG_DIR": str(tmp_path / "BackroomsLogs"),
        "BACKROOMS_RETRY_BASE_DELAY": "0",
        "BACKROOMS_OFFLINE_DELAY": "0",
        "NO_COLOR": "1",
        "WORLD_INTERFACE_URL": server.world_url,
    }
    for provider in load_registry().providers.values():
        if provider.kind == "anthropic" and provider.base_url_env:
            env[provider.base_url_env] = server.anthropic_base_url
        elif provider.kind == "openai" and provider.base_url_env:
            env[provider.base_url_env] = server.openai_base_url
        if provider.key_env and provider.kind != "world_interface":
            env[provider.key_env] = f"test-key-for-{provider.name}"
    return env


@pytest.fixture
def upstream_templates() -> Path:
    if not UPSTREAM_TEMPLATES.is_dir():
        pytest.skip(f"upstream templates not found at {UPSTREAM_TEMPLATES} (shared/ is absent)")
    return UPSTREAM_TEMPLATES
