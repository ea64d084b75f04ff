"""httpcore's network backend, written on asyncio's protocols: the sockets under the SDKs' HTTP
client, with paced reads (`_http.ReadPacing`).

Why not httpcore's own (anyio) backend: it arms and disarms a cancel scope around every socket
read and write, and answers "is this idle connection closed?" with a system call, for every
connection in the pool, whenever a request starts or a response ends. Under hundreds of
concurrent streams that bookkeeping was the largest part of a reply's CPU time (bench/). Here a
socket's bytes arrive through the event loop into the stream's buffer; a read takes what is there
and waits (with a timer) only when nothing is; a closed connection is known from the EOF the loop
delivered, without asking the kernel.
"""

# ruff: noqa: ASYNC109 - the `timeout` parameters are httpcore's network-backend interface

from __future__ import annotations

import asyncio
import socket
import ssl
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
        self._drained: asyncio.Future[None] | None = None  # a write waiting for room
        self._writable = True
        self._next_read = 0.0  # loop time before which the stream is not read again
        self._counted = False

    # The event loop's side.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._counted = True
        self._pacing.open += 1

    def data_received(self, data: bytes) -> None:
        self._received.append(data)
        self._tail = (self._tail + data[-len(_LAST_CHUNK) :])[-len(_LAST_CHUNK) :]
        _wake(self._reader)
        if self._tail == _LAST_CHUNK:  # the body's end may come in a segment of its own
            _wake(self._resting)

    def eof_received(self) -> bool:
        self._ended = True
        _wake(self._reader)
        _wake(self._resting)
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended = True
        self._error = exc
        self._uncount()
        _wake(self._reader)
        _wake(self._resting)
        self._writable = True
        _wake(self._drained)

    def pause_writing(self) -> None:
        self._writable = False

    def resume_writing(self) -> None:
        self._writable = True
        _wake(self._drained)

    # httpcore's side.

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        loop = asyncio.get_running_loop()
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
        self._next_read = loop.time() + self._pacing.interval()
        if self._received:
            return self._take(max_bytes)
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
        if not buffer:
            return
        if self._ended or self._transport is None or self._transport.is_closing():
            raise httpcore2.WriteError("the connection is closed")
        self._transport.write(buffer)
        if not self._writable:
            self._drained = asyncio.get_running_loop().create_future()
            try:
                await _within(self._drained, timeout, httpcore2.WriteTimeout("timed out writing"))
            finally:
                self._drained = None
            if self._ended:
                raise httpcore2.WriteError("the connection closed while writing")

    async def aclose(self) -> None:
        self._uncount()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

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
        assert self._transport is not None
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    self._transport, self, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError as exc:
            self._transport.close()
            raise httpcore2.ConnectTimeout("timed out negotiating TLS") from exc
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            self._transport.close()
            raise httpcore2.ConnectError(str(exc) or type(exc).__name__) from exc
        if transport is None:  # the peer closed during the handshake
            raise httpcore2.ConnectError("the connection closed during the TLS handshake")
        self._transport = transport  # type: ignore[assignment]
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # asked of idle connections: has the server closed it?
            return self._ended or bool(self._received)
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
