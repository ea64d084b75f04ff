"""Which store the settings name (BACKROOMS_DATABASE_URL, BACKROOMS_DB, DATABASE_URL), and a URL's
password never shown: in messages, in `runs`, in errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from backrooms_engine.errors import ConfigError
from backrooms_engine.store import StoreLocation, redact, store_location
from bot.settings import Settings
from tests.helpers import backrooms

PG = "postgresql://ann@db.example:5432/relay"


def test_the_default_is_a_sqlite_file_in_the_working_directory() -> None:
    assert store_location({}) == StoreLocation("sqlite", "backrooms.db", "BACKROOMS_DB")


def test_backrooms_db_names_a_sqlite_file() -> None:
    found = store_location({"BACKROOMS_DB": "/data/b.db"})
    assert (found.dialect, found.path) == ("sqlite", Path("/data/b.db"))


@pytest.mark.parametrize(
    ("url", "dialect", "target"),
    [
        (PG, "postgres", PG),
        ("postgres://ann@h/relay", "postgres", "postgres://ann@h/relay"),  # Heroku's spelling
        ("sqlite:///relative/b.db", "sqlite", "relative/b.db"),
        ("sqlite:////abs/b.db", "sqlite", "/abs/b.db"),
    ],
)
def test_backrooms_database_url_selects_the_dialect(url: str, dialect: str, target: str) -> None:
    found = store_location({"BACKROOMS_DATABASE_URL": url})
    assert (found.dialect, found.target, found.setting) == (
        dialect,
        target,
        "BACKROOMS_DATABASE_URL",
    )


def test_setting_both_is_an_error_naming_both() -> None:
    with pytest.raises(ConfigError) as raised:
        store_location({"BACKROOMS_DATABASE_URL": PG, "BACKROOMS_DB": "b.db"})
    assert "BACKROOMS_DATABASE_URL" in str(raised.value) and "BACKROOMS_DB" in str(raised.value)


def test_database_url_is_read_only_when_neither_is_set() -> None:
    platform = "postgresql://u@platform/db"
    assert store_location({"DATABASE_URL": platform}).target == platform
    assert store_location({"DATABASE_URL": platform, "BACKROOMS_DB": "b.db"}).target == "b.db"
    assert store_location({"DATABASE_URL": platform, "BACKROOMS_DATABASE_URL": PG}).target == PG


@pytest.mark.parametrize(
    "url", ["mysql://ann:hunter2@h/db", "sqlite://relative.db", "sqlite:///", "hunter2"]
)
def test_a_url_of_no_known_shape_is_refused_without_its_password(url: str) -> None:
    with pytest.raises(ConfigError, match="BACKROOMS_DATABASE_URL") as raised:
        store_location({"BACKROOMS_DATABASE_URL": url})
    assert "hunter2" not in str(raised.value).replace("BACKROOMS_DATABASE_URL=hunter2", "")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://ann:hunter2@h:5432/db", "postgresql://ann:***@h:5432/db"),
        (
            "postgresql://ann:hun%40ter2@h/db?sslmode=require",
            "postgresql://ann:***@h/db?sslmode=require",
        ),
        ("postgresql://:hunter2@h/db", "postgresql://:***@h/db"),
        (
            "postgresql://h/db?password=hunter2&sslmode=a",
            "postgresql://h/db?password=***&sslmode=a",
        ),
        ("postgresql://ann@h/db", "postgresql://ann@h/db"),
        ("postgresql://ann:hunter2@[bad/db", "postgresql://***"),
    ],
)
def test_redact_masks_every_password(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_a_location_shows_and_reprs_without_its_password() -> None:
    location = store_location({"BACKROOMS_DATABASE_URL": "postgresql://ann:hunter2@h/db"})
    assert "hunter2" not in f"{location} {location!r} {location.shown}"
    assert location.masked("FATAL: password hunter2 refused") == "FATAL: password *** refused"


def test_settings_carry_the_store_and_refuse_two() -> None:
    assert Settings.from_mapping({"BACKROOMS_DATABASE_URL": PG}).store.target == PG
    with pytest.raises(ConfigError, match="both BACKROOMS_DATABASE_URL and BACKROOMS_DB"):
        Settings.from_mapping({"BACKROOMS_DATABASE_URL": PG, "BACKROOMS_DB": "b.db"})


async def test_the_cli_says_both_settings_in_one_line(tmp_path: Path) -> None:
    env = {"BACKROOMS_DATABASE_URL": "sqlite:///a.db", "BACKROOMS_DB": "b.db"}
    code, out, err = await backrooms("runs", env=env, cwd=tmp_path)
    assert code == 2 and out == ""
    assert err.startswith("backrooms: error: both BACKROOMS_DATABASE_URL and BACKROOMS_DB")
    assert err.count("\n") == 1


async def test_a_sqlite_url_is_the_store_the_cli_uses(tmp_path: Path) -> None:
    env = {"BACKROOMS_DATABASE_URL": "sqlite:///data/mine.db"}
    code, out, err = await backrooms("runs", env=env, cwd=tmp_path)
    assert (code, out) == (0, "no runs yet in data/mine.db; try: backrooms demo\n"), err
    assert not (tmp_path / "data").exists()  # a read-only command creates no database
    code, out, err = await backrooms("demo", env=env, cwd=tmp_path)
    assert code == 0, err
    assert (tmp_path / "data" / "mine.db").is_file()
    code, out, err = await backrooms("runs", env=env, cwd=tmp_path)
    assert code == 0 and "offline offline" in out, err


async def test_an_unreachable_server_is_one_line_without_the_password(tmp_path: Path) -> None:
    url = "postgresql://ann:hunter2@127.0.0.1:1/relay?connect_timeout=2"
    code, out, err = await backrooms("runs", env={"BACKROOMS_DATABASE_URL": url}, cwd=tmp_path)
    assert code == 2 and out == ""
    assert err.startswith("backrooms: error: cannot connect to postgresql://ann:***@127.0.0.1:1/")
    assert "check BACKROOMS_DATABASE_URL" in err and err.count("\n") == 1
    assert "hunter2" not in err
