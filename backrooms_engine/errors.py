"""Exceptions raised by the engine.

    BackroomsError
    ├── ConfigError            bad input a user can fix; the message says what was wrong and what is accepted
    │   ├── RegistryError      malformed model registry file (file and line)
    │   ├── UnknownModelError  an alias that is not in the registry
    │   ├── TemplateError      unknown, malformed or mismatched template (file and line)
    │   ├── MissingKeyError    an API key a chosen provider needs is not set (names the variable)
    │   └── LimitError         a start refused by a cap (names the limit and its setting)
    ├── ProviderError          a model API call failed; carries the model alias and provider name
    │   ├── TransientProviderError   worth retrying (408, 409, 429, 5xx, 529, connection loss, timeout)
    │   │   └── UnreachableProviderError  nothing answers at the address: retried for seconds only
    │   └── PermanentProviderError   ends the run with a clear reason (400, 401, 403, 404, ...)
    │   └── LeaseHeld          a run another process drives (names the process)
    └── StoreError             the transcript store cannot be opened or written
        └── LeaseLost          a write refused: another process has taken the run over

Retry logic looks only at TransientProviderError versus PermanentProviderError.
"""

from __future__ import annotations


class BackroomsError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigError(BackroomsError):
    """Bad input: the message is meant for the user as it is."""


class RegistryError(ConfigError):
    pass


class UnknownModelError(ConfigError):
    pass


class TemplateError(ConfigError):
    pass


class MissingKeyError(ConfigError):
    pass


class LimitError(ConfigError):
    """A start refused by a cap; the message names the limit and the setting that raises it."""


class ProviderError(BackroomsError):
    def __init__(self, message: str, *, model: str, provider: str, status: int | None = None):
        super().__init__(message)
        self.model = model
        self.provider = provider
        self.status = status

    @property
    def reason(self) -> str:
        """One line for a transcript or a chat message: which model, which provider, what happened."""
        return f"{self.model} ({self.provider}): {self.args[0]}"


class TransientProviderError(ProviderError):
    def __init__(
        self,
        message: str,
        *,
        model: str,
        provider: str,
        status: int | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message, model=model, provider=provider, status=status)
        self.retry_after = retry_after


class UnreachableProviderError(TransientProviderError):
    """Nothing answers at the provider's address (connection refused, a name that does not
    resolve). A local server may be starting, so it is retried, but only for a few seconds in
    all (RetryPolicy.unreachable_for); then it ends the run, and the message names the URL and
    the setting that holds it."""


class PermanentProviderError(ProviderError):
    pass


class StoreError(BackroomsError):
    pass


class LeaseLost(StoreError):
    """A write for a run was refused because the epoch this process holds is no longer the run's:
    another process has claimed it. The process drops the run at once (ARCHITECTURE.md, "Runs
    owned by leases")."""

    def __init__(self, run_id: int):
        super().__init__(f"run {run_id} was taken over by another process; this one let it go")
        self.run_id = run_id


TRANSIENT_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 520, 522, 524, 529})


def is_transient_status(status: int) -> bool:
    """408, 409, 429, every 5xx (529 is Anthropic's "overloaded") are worth a retry."""
    return status in TRANSIENT_STATUSES or 500 <= status <= 599


class UnknownRunError(ConfigError):
    pass


class LeaseHeld(ConfigError):
    """A claim refused: another live process holds the run's lease."""

    def __init__(self, run_id: int, holder: str, seconds_left: float):
        host, _, rest = holder.partition(":")
        pid = rest.partition(":")[0]
        super().__init__(
            f"run {run_id} is being driven by another process (pid {pid} on {host}); stop that "
            f"process first, or wait: its lease runs out in {max(seconds_left, 0):.0f} s if it died"
        )
        self.run_id = run_id
        self.holder = holder
