"""The HTTP client under the model SDKs: connections kept alive for every concurrent stream, and
each stream's socket read at most every so often.

Why pace reads: a model API sends a reply as dozens to hundreds of small events, and every one
that arrives alone costs a wake-up of the event loop and a trip through the HTTP stack. Under load
that per-read cost was the largest part of a reply's CPU (bench/). Waiting a little before the
next read lets the events that arrived meanwhile come in one read. The wait follows how busy the
process is (`ReadPacing`): none while it uses under half a core, growing to 0.2 s as it nears a
full one. A run in a terminal, or a few dozen in a service, read every event as it comes; at 200
concurrent streams each is read a handful of times a second. Nobody watching can tell: chat
surfaces edit at most once a second, and the web page paints what it has. A read held by the pacing
goes ahead as soon as a chunked body's last bytes are in (the APIs stream that way; `_net`), so a
reply's end is not late; what waits is the middle of a reply, by at most one interval.

Why several clients per API (`Shards`): httpcore's pool walks every connection it holds whenever
a request starts and whenever a response ends, asking each idle one whether the server closed it.
One pool holding the connections of hundreds of concurrent streams paid that walk, hundreds of
connections long, twice per reply (with httpcore's own network backend, each question was also a
system call). Each shard is a client with its own pool; a stream leases the least busy one, and a
new shard is opened only when all of them carry `PER_SHARD` streams.

How: the SDKs accept an httpx client with a transport of our choice: httpx's own, with the pool
built by us over our own network backend (`_net.AsyncioBackend`, which says why). httpx ignores the
proxy variables (HTTPS_PROXY, ALL_PROXY, ...) for a client given its own transport, so when one
is set the clients keep the SDK's default transport: the proxy is used, reads are not paced.
"""

from __future__ import annotations

import functools
import ssl
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

import httpcore2
import httpx2

from ._net import AsyncioBackend

CEILING = 0.2  # seconds: the longest wait before reading a stream again
CALM, BUSY = 0.5, 0.9  # share of one core: no pacing below CALM, the full CEILING from BUSY
SAMPLE = 0.5  # seconds between two readings of the process's CPU time
# Keep-alive for as many connections as may be open: the SDKs' default keeps 100 per client, so
# past 100 concurrent streams to one API every reply opened (and for HTTPS, negotiated) a new one.
LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=1000, keepalive_expiry=30)


PER_SHARD = 16  # concurrent streams a client carries before another one is opened
MOST_SHARDS = 64

C = TypeVar("C")


class Shards(Generic[C]):
    """SDK clients of one API, opened as concurrency needs them and shared by all its runs."""

    def __init__(
        self,
        open_client: Callable[[], C],
        close_client: Callable[[C], Awaitable[None]],
        *,
        per_shard: int = PER_SHARD,
        most: int = MOST_SHARDS,
    ) -> None:
        self._open, self._close = open_client, close_client
        self._per_shard, self._most = per_shard, most
        self._clients: list[C] = []
        self._load: list[int] = []  # streams in flight, per client

    @contextmanager
    def lease(self) -> Iterator[C]:
        """The least busy client, for the length of one request and its streamed answer."""
        index = min(range(len(self._load)), key=self._load.__getitem__, default=None)
        if index is None or (
            self._load[index] >= self._per_shard and len(self._clients) < self._most
        ):
            self._clients.append(self._open())
            self._load.append(0)
            index = len(self._clients) - 1
        self._load[index] += 1
        try:
            yield self._clients[index]
        finally:
            self._load[index] -= 1

    def __len__(self) -> int:
        return len(self._clients)

    async def aclose(self) -> None:
        clients, self._clients, self._load = self._clients, [], []
        for client in clients:
            await self._close(client)


def sdk_clients(
    client_class: Callable[..., C],
    http_client_class: Callable[..., httpx2.AsyncClient],
    *,
    pacing: ReadPacing,
    **options: Any,
) -> Shards[C]:
    """Shards of one SDK's async client (`client_class`, e.g. anthropic.AsyncAnthropic), each
    on its own paced connection pool; `options` go to every client (key, base URL, timeout...).
    The SDK's own retries are off: the engine is the one retry layer."""

    def open_client() -> C:
        if urllib.request.getproxies():  # a proxy from the environment: httpx's own transport
            http_client = http_client_class()
        else:
            http_client = http_client_class(transport=_PacedTransport(pacing))
        return client_class(max_retries=0, http_client=http_client, **options)

    return Shards(open_client, lambda client: client.close())  # type: ignore[attr-defined]


class ReadPacing:
    """How long a connection waits before its next read; shared by all of a process's model
    connections. `load` gives the process's recent CPU use as a share of one core (the event
    loop is one thread, so 1.0 is saturation); tests pass their own."""

    def __init__(self, *, ceiling: float = CEILING, load: Callable[[], float] | None = None):
        self.ceiling = ceiling
        self._load = load or _CpuLoad()
        self.open = 0  # connections open now: a leak shows (tests/engine/test_http.py)
        self.reads = 0  # socket reads so far, for the benchmark's figures

    def interval(self) -> float:
        busy = (self._load() - CALM) / (BUSY - CALM)
        return self.ceiling * min(1.0, max(0.0, busy))


class _CpuLoad:
    """This process's CPU time over wall time, measured over the last SAMPLE seconds or so."""

    def __init__(self) -> None:
        self._wall = time.monotonic()
        self._cpu = time.process_time()
        self._load = 0.0

    def __call__(self) -> float:
        wall = time.monotonic()
        if wall - self._wall >= SAMPLE:
            cpu = time.process_time()
            self._load = (cpu - self._cpu) / (wall - self._wall)
            self._wall, self._cpu = wall, cpu
        return self._load


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every client: building one reads the CA bundle, tens of ms."""
    return httpx2.create_ssl_context(trust_env=True)


class _PacedTransport(httpx2.AsyncHTTPTransport):
    def __init__(self, pacing: ReadPacing) -> None:
        super().__init__(verify=_tls(), limits=LIMITS)
        if not isinstance(getattr(self, "_pool", None), httpcore2.AsyncConnectionPool):
            # httpx keeps its pool in `_pool`; if a release moves it, fail here, loudly, rather
            # than stream unpaced. tests/engine/test_http.py would catch it first.
            raise RuntimeError("httpx2.AsyncHTTPTransport no longer keeps its pool in `_pool`")
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=_tls(),
            max_connections=LIMITS.max_connections,
            max_keepalive_connections=LIMITS.max_keepalive_connections,
            keepalive_expiry=LIMITS.keepalive_expiry,
            network_backend=AsyncioBackend(pacing),
        )
