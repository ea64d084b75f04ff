"""httpcore's network backend, written on asyncio's protocols: the sockets under the SDKs' HTTP
client, with paced reads (`_http.ReadPacing`).

Why not httpcore's own (anyio) backend: it arms and disarms a cancel scope around every socket
read and write, and answers "is this idle connection closed?" with a system call, for every
connection in the pool, whenever a request starts or a response ends. Under hundreds of
concurrent streams that bookkeeping was the largest part of a reply's CPU time (bench/). Here a
socket's bytes arrive through the event loop into the stream's buffer; a read takes what is there
and waits (with a timer) only when nothing is; a closed connection is known from the EOF the loop
delivered, and the kernel is asked only about a connection left unused for a while (`QUIET`),
which is when servers close kept-alive connections.

Flow control is by looking at what is still queued (`_drain`), the same over TLS and on every loop.
A connection closed with a request still queued is aborted, so that a request reported failed is
not delivered afterwards.
"""

# ruff: noqa: ASYNC109 - the `timeout` parameters are httpcore's network-backend interface

from __future__ import annotations

import asyncio
import select
import socket
import ssl
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import httpcore2

if TYPE_CHECKING:
    from ._http import ReadPacing


class AsyncioBackend(httpcore2.AsyncNetworkBackend):
    def __init__(self, pacing: ReadPacing) -> None:
        self._pacing = pacing

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address else None
        stream = await _connect(
            loop.create_connection(lambda: _Stream(self._pacing), host, port, local_addr=local),
            timeout,
        )
        stream.set_options(socket_options)
        return stream

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        stream = await _connect(
            loop.create_unix_connection(lambda: _Stream(self._pacing), path), timeout
        )
        stream.set_options(socket_options)
        return stream

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def _connect(opening: Any, timeout: float | None) -> _Stream:
    try:
        async with asyncio.timeout(timeout):
            _, stream = await opening
    except TimeoutError as exc:
        raise httpcore2.ConnectTimeout(str(exc) or "timed out connecting") from exc
    except OSError as exc:
        raise httpcore2.ConnectError(str(exc) or type(exc).__name__) from exc
    return stream


class _Stream(asyncio.Protocol, httpcore2.AsyncNetworkStream):
    """One connection: the loop's protocol on one side, httpcore's network stream on the other."""

    def __init__(self, pacing: ReadPacing) -> None:
        self._pacing = pacing
        self._transport: asyncio.Transport | None = None
        self._received: list[bytes] = []
        self._ended = False  # EOF or connection lost: nothing more will be received
        self._error: Exception | None = None
        self._reader: asyncio.Future[None] | None = None  # a read waiting for bytes
        self._resting: asyncio.Future[None] | None = None  # a read held back by the pacing
        self._tail = b""  # the last bytes received, to see a body's end in them
        self._raw: asyncio.Transport | None = None  # the TCP transport, under TLS if any
        self._next_read = 0.0  # loop time before which the stream is not read again
        self._used = time.monotonic()  # when httpcore last read or wrote
        self._counted = False

    # The event loop's side.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = self._raw = transport  # type: ignore[assignment]
        self._counted = True
        self._pacing.open += 1

    def data_received(self, data: bytes) -> None:
        self._received.append(data)
        self._tail = (self._tail + data[-len(_LAST_CHUNK) :])[-len(_LAST_CHUNK) :]
        _wake(self._reader)
        if self._tail == _LAST_CHUNK:  # the body's end may come in a segment of its own
            _wake(self._resting)

    def eof_received(self) -> bool:
        self._end()
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._error = exc
        self._uncount()
        self._end()

    def _end(self) -> None:
        """Nothing more will be received: whoever waits for bytes goes on."""
        self._ended = True
        _wake(self._reader)
        _wake(self._resting)

    # httpcore's side.

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        loop = asyncio.get_running_loop()
        self._used = time.monotonic()
        wait = self._next_read - loop.time()
        if wait > 0 and not self._ended and not self._body_complete():
            self._resting = loop.create_future()
            try:
                await _within(self._resting, wait, None)
            finally:
                self._resting = None
        if not self._received and not self._ended:
            self._reader = loop.create_future()
            try:
                await _within(self._reader, timeout, httpcore2.ReadTimeout("timed out reading"))
            finally:
                self._reader = None
        self._pacing.reads += 1
        if self._received:
            data = self._take(max_bytes)
            # More than one read's worth already here: the next read need not wait for more.
            self._next_read = 0.0 if self._received else loop.time() + self._pacing.interval()
            return data
        if self._error is not None:
            raise httpcore2.ReadError(str(self._error) or type(self._error).__name__)
        return b""

    def _body_complete(self) -> bool:
        return bool(self._received) and self._tail == _LAST_CHUNK

    def _take(self, max_bytes: int) -> bytes:
        data = self._received[0] if len(self._received) == 1 else b"".join(self._received)
        if len(data) <= max_bytes:
            self._received = []
            return data
        self._received = [data[max_bytes:]]
        return data[:max_bytes]

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._next_read = 0.0  # a new request: its answer is read as soon as it comes
        self._used = time.monotonic()
        if not buffer:
            return
        if self._ended or self._transport is None or self._transport.is_closing():
            raise httpcore2.WriteError("the connection is closed")
        self._transport.write(buffer)
        if self._backlog() > BACKLOG:
            await self._drain(timeout)

    def _backlog(self) -> int:
        """Bytes written but not yet taken by the kernel. Under TLS they sit in the TCP
        transport: the TLS layer hands a write down whole and tells of no backlog itself."""
        return sum(t.get_write_buffer_size() for t in {self._transport, self._raw} if t)

    async def _drain(self, timeout: float | None) -> None:
        """Wait until the kernel has taken all but BACKLOG bytes. Polled: this runs only for a
        request larger than the socket buffers going to a server that reads slowly, and a
        poll works the same over TLS and on every loop, where flow-control callbacks do not."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self._backlog() > BACKLOG:  # ends when the kernel catches up, or raises below
            if self._ended:
                raise httpcore2.WriteError("the connection closed while writing")
            if deadline is not None and loop.time() >= deadline:
                raise httpcore2.WriteTimeout("timed out writing")
            await asyncio.sleep(DRAIN_POLL)

    async def aclose(self) -> None:
        self._uncount()
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._backlog():
            # A request given up on (timed out, cancelled): drop what is still queued rather
            # than deliver it later, when its sender has reported it failed and may retry it.
            transport.abort()
        else:
            transport.close()

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            self._pacing.open -= 1

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        raw = self._transport
        assert raw is not None
        # httpcore does not close a stream whose TLS failed: every way out of here does.
        try:
            if self._ended or raw.is_closing():  # the loop would wait on a dead transport
                raise httpcore2.ConnectError("the server closed the connection before TLS began")
            try:
                async with asyncio.timeout(timeout):
                    transport = await loop.start_tls(
                        raw, self, ssl_context, server_hostname=server_hostname
                    )
            except TimeoutError as exc:
                raise httpcore2.ConnectTimeout("timed out negotiating TLS") from exc
            except (OSError, ssl.SSLError, ConnectionError) as exc:
                raise httpcore2.ConnectError(str(exc) or type(exc).__name__) from exc
            if transport is None:  # the peer closed during the handshake
                raise httpcore2.ConnectError("the connection closed during the TLS handshake")
        except BaseException:
            self._uncount()
            raw.abort()
            raise
        self._transport = transport  # type: ignore[assignment]
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # asked of idle connections: has the server closed it?
            if self._ended or self._received:
                return True
            # What the loop has not delivered yet, the kernel knows: asked only of connections
            # idle for a while, as a server's keep-alive timeout closes (a syscall each).
            quiet = time.monotonic() - self._used >= QUIET
            return quiet and _readable(self.get_extra_info("socket"))
        names = {"ssl_object": "ssl_object", "client_addr": "sockname", "server_addr": "peername"}
        if self._transport is None:
            return None
        if info == "socket":
            return self._transport.get_extra_info("socket")
        return self._transport.get_extra_info(names[info]) if info in names else None

    def set_options(self, options: Iterable[Any] | None) -> None:
        sock: socket.socket | None = self.get_extra_info("socket")
        for option in options or ():
            if sock is not None:
                sock.setsockopt(*option)


# How a chunked HTTP/1.1 body ends (RFC 9112 7.1): the end of the last chunk, then a chunk of size
# zero. A body's end is never held back by the pacing: when these bytes come in, a paced read
# goes ahead at once, so the reply's last event is not late. (Bytes inside a chunk that happen to
# look like this only make one read early.)
_LAST_CHUNK = b"\r\n0\r\n\r\n"


QUIET = 1.0  # seconds unused after which the kernel is asked whether the server closed
BACKLOG = 64 * 1024  # bytes a write may leave queued before it waits for the kernel
DRAIN_POLL = 0.005  # seconds between two looks at a backlog


def _readable(sock: Any) -> bool:
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)  # select: Windows has no poll
    except (OSError, ValueError):  # closed meanwhile
        return True
    return bool(readable)


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


async def _within(
    waiter: asyncio.Future[None], timeout: float | None, late: Exception | None
) -> None:
    """Wait for `waiter`; after `timeout` seconds raise `late` instead (or just go on)."""
    if timeout is None:
        await waiter
        return
    timer = asyncio.get_running_loop().call_later(timeout, _expire, waiter, late)
    try:
        await waiter
    finally:
        timer.cancel()


def _expire(waiter: asyncio.Future[None], late: Exception | None) -> None:
    if waiter.done():
        return
    if late is None:
        waiter.set_result(None)
    else:
        waiter.set_exception(late)
