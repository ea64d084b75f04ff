"""Where the store is: which setting names it, which dialect it speaks, and how to print it.

`BACKROOMS_DATABASE_URL` (`postgresql://...` or `sqlite:///path`) wins over `BACKROOMS_DB` (a
SQLite file path); setting both is an error naming both. `DATABASE_URL` (what hosting platforms
set) is read when neither is set. A URL's password never leaves this module unmasked except to
the driver: `shown` and every error carry `redact(url)`.

`sqlite:///name.db` is a path relative to the working directory, `sqlite:////abs/name.db` an
absolute one (the spelling SQLAlchemy uses, so a URL copied from another tool means the same).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import ConfigError
from .schema import Dialect

DEFAULT_SQLITE = "backrooms.db"
_POSTGRES_SCHEMES = ("postgresql", "postgres")
_SETTINGS = ("BACKROOMS_DATABASE_URL", "BACKROOMS_DB", "DATABASE_URL")


def redact(url: str) -> str:
    """`url` with any password (`user:pw@` or `?password=`) replaced by `***`."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # an unparsable port or bracket: show nothing after the scheme
        return url.split("://", 1)[0] + "://***"
    if password is not None:
        userinfo, _, host = parts.netloc.rpartition("@")
        parts = parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{host}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(key == "password" for key, _ in query):
        masked = [(key, "***" if key == "password" else value) for key, value in query]
        parts = parts._replace(query=urlencode(masked, safe="*/:"))
    return urlunsplit(parts) if parts != urlsplit(url) else url


def password_of(url: str) -> str | None:
    """The password `url` holds, to be masked in a driver's messages."""
    try:
        parts = urlsplit(url)
        found = parts.password
    except ValueError:
        return None
    given = [value for key, value in parse_qsl(parts.query) if key == "password"]
    return found or (given[0] if given else None)


@dataclass(frozen=True)
class StoreLocation:
    dialect: Dialect
    target: str = field(repr=False)  # the SQLite path, or the full URL (with any password)
    setting: str = "BACKROOMS_DB"  # the setting that named it, for messages

    @property
    def path(self) -> Path:
        """The SQLite file (for the sqlite dialect only)."""
        return Path(self.target)

    @property
    def shown(self) -> str:
        return redact(self.target) if self.dialect == "postgres" else self.target

    def __str__(self) -> str:
        return self.shown

    def masked(self, message: str) -> str:
        """`message` (a driver's error) with this location's password, if any, replaced."""
        password = password_of(self.target) if self.dialect == "postgres" else None
        return message.replace(password, "***") if password else message


def parse_url(url: str, setting: str) -> StoreLocation:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in _POSTGRES_SCHEMES:
        return StoreLocation("postgres", url, setting)
    if scheme == "sqlite":
        path = url.split("://", 1)[1]
        if not path.startswith("/") or path == "/":
            raise ConfigError(
                f"{setting}={redact(url)}: a SQLite URL is sqlite:///relative/path.db "
                "or sqlite:////absolute/path.db"
            )
        return StoreLocation("sqlite", path[1:], setting)
    raise ConfigError(
        f"{setting}={redact(url)}: use a postgresql://user@host/database URL or sqlite:///path.db"
    )


def store_location(env: Mapping[str, str]) -> StoreLocation:
    """The store the environment names (module docstring for the rules)."""
    url, path, platform = (env.get(name, "").strip() for name in _SETTINGS)
    if url and path:
        raise ConfigError(
            "both BACKROOMS_DATABASE_URL and BACKROOMS_DB are set; "
            "set only one (BACKROOMS_DATABASE_URL takes a postgresql:// or sqlite:/// URL)"
        )
    if url:
        return parse_url(url, "BACKROOMS_DATABASE_URL")
    if path:
        return StoreLocation("sqlite", path, "BACKROOMS_DB")
    if platform:
        return parse_url(platform, "DATABASE_URL")
    return StoreLocation("sqlite", DEFAULT_SQLITE, "BACKROOMS_DB")
