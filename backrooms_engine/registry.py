"""Model aliases -> ModelSpec, read from TOML.

A default registry ships in the package (`models.toml` beside this module). A user file
(`BACKROOMS_MODELS`, else `./models.toml`) is laid over it: its providers and models replace or add to the
defaults, table by table.
"""

from __future__ import annotations

import re
import tomllib
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import MissingKeyError, RegistryError, UnknownModelError
from .suggest import did_you_mean

DEFAULT_REGISTRY = Path(__file__).with_name("models.toml")

ProviderKind = Literal["anthropic", "openai", "world_interface", "offline"]
SystemHandling = Literal["native", "developer", "inline"]
TokenParam = Literal["max_tokens", "max_completion_tokens"]
Effort = Literal["low", "medium", "high", "xhigh", "max"]  # the 5.5 models' thinking effort

PROVIDER_KINDS: tuple[str, ...] = ("anthropic", "openai", "world_interface", "offline")
SYSTEM_HANDLINGS: tuple[str, ...] = ("native", "developer", "inline")
TOKEN_PARAMS: tuple[str, ...] = ("max_tokens", "max_completion_tokens")
EFFORTS: tuple[str, ...] = ("low", "medium", "high", "xhigh", "max")


@dataclass(frozen=True)
class ProviderSpec:
    """One API endpoint: its dialect, where it lives and which variable holds its key."""

    name: str
    kind: ProviderKind
    base_url: str | None = None
    base_url_env: str | None = None
    key_env: str | None = None
    key_required: bool = True

    def resolve_base_url(self, env: Mapping[str, str]) -> str | None:
        url = self.base_url
        if self.base_url_env and env.get(self.base_url_env):
            url = env[self.base_url_env]
        if url and self.name == "ollama":
            url = _with_api_path(url)
        return url

    def key(self, env: Mapping[str, str]) -> str | None:
        return env.get(self.key_env) or None if self.key_env else None

    def key_is_set(self, env: Mapping[str, str]) -> bool:
        return bool(self.key_env and env.get(self.key_env))


def _with_api_path(url: str) -> str:
    """Ollama serves its OpenAI-compatible API under /v1; `OLLAMA_BASE_URL=http://host:11434` (the
    address Ollama's own docs give) gets it added. A URL with any path is taken as written."""
    parts = urllib.parse.urlsplit(url)
    if parts.path.strip("/"):
        return url
    return urllib.parse.urlunsplit(parts._replace(path="/v1"))


@dataclass(frozen=True)
class ModelSpec:
    """Everything the engine needs to know about one model alias."""

    alias: str
    provider: ProviderSpec
    api_id: str
    display_name: str
    company: str
    max_tokens: int = 1024
    token_param: TokenParam = "max_tokens"
    temperature: float | None = None
    system_prompt: SystemHandling = "native"
    log_folder: str = ""
    avatar_url: str = ""
    colour: str = "#9e9e9e"
    prompt_cache: bool = True  # Anthropic: mark cache breakpoints (BACKROOMS_PROMPT_CACHE too)
    cache_min_tokens: int = 1024  # the shortest prefix the model caches (shorter: not marked)
    effort: Effort | None = None  # Anthropic thinking models: sent as output_config.effort

    @property
    def is_world_interface(self) -> bool:
        return self.provider.kind == "world_interface"


def default_log_folder(alias: str) -> str:
    """Upstream's README names one folder per exploring model; for other aliases we derive one."""
    kept = re.sub(r"[^A-Za-z0-9]", "", alias) or "Model"
    return kept[0].upper() + kept[1:] + "Explorations"


class Registry:
    def __init__(self, providers: Mapping[str, ProviderSpec], models: Mapping[str, ModelSpec]):
        self.providers = dict(providers)
        self.models = dict(models)

    def get(self, alias: str) -> ModelSpec:
        try:
            return self.models[alias]
        except KeyError:
            known = ", ".join(sorted(self.models))
            raise UnknownModelError(
                f"unknown model {alias!r}{did_you_mean(alias, self.models)}; available: {known}"
            ) from None

    def resolve(self, aliases: Iterable[str]) -> list[ModelSpec]:
        return [self.get(alias) for alias in aliases]

    def aliases(self) -> list[str]:
        return sorted(self.models)


def missing_keys(specs: Iterable[ModelSpec], env: Mapping[str, str]) -> list[str]:
    """The key variables that the chosen models need and the environment lacks, each named once."""
    missing: list[str] = []
    for spec in specs:
        p = spec.provider
        if p.key_required and p.key_env and not env.get(p.key_env) and p.key_env not in missing:
            missing.append(p.key_env)
    return missing


def check_keys(specs: Iterable[ModelSpec], env: Mapping[str, str]) -> None:
    specs = list(specs)
    missing = missing_keys(specs, env)
    if missing:
        users = {
            var: sorted({s.alias for s in specs if s.provider.key_env == var}) for var in missing
        }
        parts = [f"{var} (needed by {', '.join(users[var])})" for var in missing]
        raise MissingKeyError(
            "missing API key: set " + "; ".join(parts) + " in the environment or in .env"
        )


def load_registry(
    user_file: Path | None = None, *, default_file: Path = DEFAULT_REGISTRY
) -> Registry:
    """Read the shipped registry, then lay the user's file (if any) over it."""
    providers_raw, models_raw = _read(default_file)
    sources = {name: default_file for name in models_raw}
    psources = {name: default_file for name in providers_raw}
    if user_file is not None:
        user_providers, user_models = _read(user_file)
        providers_raw.update(user_providers)
        models_raw.update(user_models)
        sources.update({name: user_file for name in user_models})
        psources.update({name: user_file for name in user_providers})
    providers = {
        name: _provider(name, table, psources[name]) for name, table in providers_raw.items()
    }
    models = {
        alias: _model(alias, table, providers, sources[alias])
        for alias, table in models_raw.items()
    }
    return Registry(providers, models)


def _read(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError(f"cannot read model registry {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message already ends with "(at line N, column M)".
        raise RegistryError(f"{path}: malformed TOML: {exc}") from None
    # [prices.ALIAS] tables are read by pricing.py, field by field.
    _reject_unknown(data, {"providers", "models", "prices"}, path, "top-level table")
    return dict(data.get("providers", {})), dict(data.get("models", {}))


class _Table:
    """Reads typed fields of one [section.name] table, reporting errors with file and line."""

    def __init__(self, path: Path, section: str, name: str, table: Any):
        self.path, self.section, self.name = path, section, name
        if not isinstance(table, dict):
            self.fail(f"[{section}.{name}] must be a table")
        self.table: dict[str, Any] = table

    def where(self) -> str:
        return f"{self.path}:{_line_of(self.path, self.section, self.name)}"

    def fail(self, message: str) -> None:
        raise RegistryError(f"{self.where()}: [{self.section}.{self.name}]: {message}")

    def require(self, *keys: str) -> None:
        """Every missing required field in one message, not one per attempt."""
        missing = [key for key in keys if key not in self.table]
        if len(missing) == 1:
            self.fail(f"missing required field {missing[0]!r}")
        if missing:
            self.fail(f"missing required fields {', '.join(repr(k) for k in missing)}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        if key not in self.table:
            if default is ...:
                self.fail(f"missing required field {key!r}")
            return default
        value = self.table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kind) or (set(kinds) & {int, float} and isinstance(value, bool)):
            names = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
            self.fail(f"field {key!r} must be {names}, got {value!r}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: Any = ...) -> Any:
        value = self.get(key, str, default)
        if value not in choices:
            self.fail(f"field {key!r} is {value!r}; accepted: {', '.join(choices)}")
        return value

    def only(self, allowed: set[str]) -> None:
        extra = sorted(set(self.table) - allowed)
        if extra:
            self.fail(
                f"unknown field(s) {', '.join(extra)}; accepted: {', '.join(sorted(allowed))}"
            )


_TYPE_NAMES = {
    str: "a string",
    int: "an int",
    float: "a float",
    bool: "a boolean (true or false)",
    dict: "a table",
    list: "an array",
}
_PROVIDER_FIELDS = {"kind", "base_url", "base_url_env", "key_env", "key_required"}
_MODEL_FIELDS = {
    "provider",
    "api_id",
    "display_name",
    "company",
    "max_tokens",
    "token_param",
    "temperature",
    "system_prompt",
    "log_folder",
    "avatar_url",
    "colour",
    "prompt_cache",
    "cache_min_tokens",
    "effort",
}


def _provider(name: str, raw: Any, path: Path) -> ProviderSpec:
    t = _Table(path, "providers", name, raw)
    t.only(_PROVIDER_FIELDS)
    t.require("kind")
    key_env = t.get("key_env", str, "") or None
    return ProviderSpec(
        name=name,
        kind=t.choice("kind", PROVIDER_KINDS),
        base_url=t.get("base_url", str, None),
        base_url_env=t.get("base_url_env", str, None),
        key_env=key_env,
        key_required=bool(t.get("key_required", bool, key_env is not None)),
    )


def _model(alias: str, raw: Any, providers: Mapping[str, ProviderSpec], path: Path) -> ModelSpec:
    t = _Table(path, "models", alias, raw)
    t.only(_MODEL_FIELDS)
    t.require("provider", "display_name", "company")
    provider_name = t.get("provider", str)
    if provider_name not in providers:
        t.fail(
            f"unknown provider {provider_name!r}{did_you_mean(provider_name, providers)}; "
            f"declared: {', '.join(sorted(providers))}"
        )
    max_tokens = t.get("max_tokens", int, 1024)
    if max_tokens < 1:
        t.fail("field 'max_tokens' must be at least 1")
    temperature = t.get("temperature", (int, float), None)
    return ModelSpec(
        alias=alias,
        provider=providers[provider_name],
        api_id=t.get("api_id", str, alias),
        display_name=t.get("display_name", str),
        company=t.get("company", str),
        max_tokens=max_tokens,
        token_param=t.choice("token_param", TOKEN_PARAMS, "max_tokens"),
        temperature=float(temperature) if temperature is not None else None,
        system_prompt=t.choice("system_prompt", SYSTEM_HANDLINGS, "native"),
        log_folder=t.get("log_folder", str, "") or default_log_folder(alias),
        avatar_url=t.get("avatar_url", str, ""),
        colour=t.get("colour", str, "#9e9e9e"),
        prompt_cache=t.get("prompt_cache", bool, True),
        cache_min_tokens=t.get("cache_min_tokens", int, 1024),
        effort=t.choice("effort", EFFORTS, None) if "effort" in t.table else None,
    )


def _line_of(path: Path, section: str, name: str) -> int:
    """Line of the `[section.name]` header, so a semantic error points where the user must look."""
    pattern = re.compile(rf'^\s*\[\s*{re.escape(section)}\s*\.\s*("?){re.escape(name)}\1\s*\]')
    try:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if pattern.match(line):
                return number
    except OSError:
        pass
    return 1


def _reject_unknown(data: dict[str, Any], allowed: set[str], path: Path, what: str) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        raise RegistryError(
            f"{path}: unknown {what}(s) {', '.join(extra)}; accepted: {', '.join(sorted(allowed))}"
        )
