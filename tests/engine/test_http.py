"""The HTTP layer under the SDKs (providers/_http.py, _net.py): reads paced under load, connections
spread over several clients, HTTPS verified. Real SDKs against the fake model server on 127.0.0.1.
Every test here runs on asyncio's loop and on uvloop (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpcore2
import pytest

from backrooms_engine.conversation import ModelRequest
from backrooms_engine.errors import TransientProviderError
from backrooms_engine.providers import _http, _net
from backrooms_engine.providers.anthropic import AnthropicProvider
from backrooms_engine.providers.openai import OpenAIProvider
from backrooms_engine.records import Usage
from backrooms_engine.registry import load_registry
from backrooms_engine.templates import Message
from tests.fakes.model_server import FakeModelServer

REQUEST = (Message("user", "hello"),)


def provider_for(alias: str, server: FakeModelServer, pacing: _http.ReadPacing):
    spec = load_registry().get(alias)
    env = {spec.provider.key_env: "test-key"}
    if spec.provider.kind == "anthropic":
        env[spec.provider.base_url_env] = server.anthropic_base_url
        return spec, AnthropicProvider(spec.provider, env, timeout=30, pacing=pacing)
    env[spec.provider.base_url_env] = server.openai_base_url
    return spec, OpenAIProvider(spec.provider, env, timeout=30, pacing=pacing)


async def pieces(provider, spec) -> tuple[list[str], Usage | None]:
    got: list[str] = []
    usage = None
    async for item in provider.stream(ModelRequest(spec, None, REQUEST)):
        if isinstance(item, Usage):
            usage = item
        else:
            got.append(item)
    return got, usage


@pytest.fixture
async def slow_server() -> AsyncIterator[FakeModelServer]:
    """20 chunks 25 ms apart: half a second per reply."""
    async with FakeModelServer(chunk_count=20, chunk_delay=0.025) as server:
        yield server


FORTY_WORDS = " ".join(f"w{i}" for i in range(40))


async def forty_words(
    server: FakeModelServer, alias: str, pacing: _http.ReadPacing
) -> tuple[list[str], Usage | None, float]:
    """Forty words from `alias` through a provider of its own: the pieces, the usage, and how
    long it took, from the request to the provider closed."""
    spec, provider = provider_for(alias, server, pacing)
    server.queue_reply(spec.api_id, FORTY_WORDS)
    loop = asyncio.get_running_loop()
    began = loop.time()
    try:
        got, usage = await pieces(provider, spec)
    finally:
        await provider.aclose()
    return got, usage, loop.time() - began


@pytest.mark.parametrize("alias", ["opus", "gpt4o"])
async def test_a_stream_in_a_calm_process_is_read_chunk_by_chunk(slow_server, alias):
    pacing = _http.ReadPacing()  # this test process is far from busy
    got, usage, _ = await forty_words(slow_server, alias, pacing)
    assert "".join(got) == FORTY_WORDS
    assert len(got) == 20  # each chunk goes up as it came
    assert pacing.reads >= 15  # 20 chunks 25 ms apart; the odd two may share a read
    assert usage is not None and usage.output_tokens


@pytest.mark.parametrize("alias", ["opus", "gpt4o"])
async def test_under_load_a_stream_is_read_a_few_times_a_second_and_loses_nothing(
    slow_server, alias
):
    # As if the process were using a whole core: the wait before each read is at its ceiling.
    pacing = _http.ReadPacing(ceiling=0.2, load=lambda: 1.0)
    got, usage, took = await forty_words(slow_server, alias, pacing)
    assert "".join(got) == FORTY_WORDS
    assert pacing.reads <= 6  # 0.5 s of chunks, read every 0.2 s (plus the headers), not 20 times
    assert usage is not None and usage.output_tokens
    assert took < 0.5 + 0.2 + 0.3  # at most one wait longer than the reply itself, plus slack
    assert pacing.open == 0  # closing the provider closed its connections


@pytest.mark.parametrize("alias", ["opus", "gpt4o"])
async def test_the_end_of_a_reply_is_not_held_back_by_the_pacing(slow_server, alias):
    # Reads 0.4 s apart: at about 0 s (the headers) and 0.4 s; the reply ends at 0.5 s. Held to
    # the pacing, the last events would wait for a read at 0.8 s; they are read as they come.
    pacing = _http.ReadPacing(ceiling=0.4, load=lambda: 1.0)
    got, usage, took = await forty_words(slow_server, alias, pacing)
    assert "".join(got) == FORTY_WORDS
    assert usage is not None and usage.output_tokens
    assert pacing.reads <= 5  # still paced: not once per chunk
    assert took < 0.7, took  # 0.5 s of reply; 0.8 s or more if the end waited for its read


async def test_concurrent_streams_spread_over_a_few_clients_that_are_kept():
    async with FakeModelServer(chunk_count=5, chunk_delay=0.02) as server:
        spec, provider = provider_for("opus", server, _http.ReadPacing())
        try:
            first = await asyncio.gather(*(pieces(provider, spec) for _ in range(40)))
            clients = len(provider._clients)
            second = await asyncio.gather(*(pieces(provider, spec) for _ in range(40)))
            kept = len(provider._clients)
        finally:
            await provider.aclose()
    texts = ["".join(got) for got, _ in first + second]
    assert all(text and usage for text, (_, usage) in zip(texts, first + second, strict=True))
    assert clients == 3  # 40 streams, 16 per client
    assert kept == 3  # the second wave reused them
    assert len(server.requests) == 80


def test_reads_are_paced_only_once_the_process_is_busy():
    load = 0.0
    pacing = _http.ReadPacing(ceiling=0.2, load=lambda: load)
    waits = {}
    for load in (0.0, 0.4, 0.5, 0.7, 0.9, 1.5):
        waits[load] = pacing.interval()
    assert waits[0.0] == waits[0.4] == waits[0.5] == 0.0
    assert 0.09 < waits[0.7] < 0.11
    assert waits[0.9] == waits[1.5] == 0.2


def test_a_new_client_opens_only_when_every_open_one_is_full():
    opened: list[object] = []

    def open_client() -> object:
        opened.append(object())
        return opened[-1]

    async def close_client(client: object) -> None:
        opened.remove(client)

    shards = _http.Shards(open_client, close_client, per_shard=2, most=3)
    with shards.lease() as a, shards.lease() as b:
        assert a is b and len(shards) == 1
        with shards.lease() as c:
            assert c is not a and len(shards) == 2
    with shards.lease() as d:  # everything released: the first, least busy, is chosen
        assert d is a
    leases = [shards.lease() for _ in range(8)]
    held = [lease.__enter__() for lease in leases]
    assert len(shards) == 3  # the most allowed; past it, the least busy carries more
    assert sorted(held.count(client) for client in set(held)) == [2, 3, 3]
    for lease in leases:
        lease.__exit__(None, None, None)
    asyncio.run(shards.aclose())
    assert opened == []


async def test_a_proxy_set_in_the_environment_is_used(monkeypatch):
    # The API's address answers nothing (127.0.0.2, port 9); only the proxy can deliver.
    async with FakeModelServer(chunk_count=3) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.base_url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        spec = load_registry().get("opus")
        env = {
            spec.provider.key_env: "k",
            spec.provider.base_url_env: "http://127.0.0.2:9/anthropic",
        }
        provider = AnthropicProvider(spec.provider, env, timeout=30, pacing=_http.ReadPacing())
        proxy.queue_reply(spec.api_id, "through the proxy")
        try:
            got, _ = await pieces(provider, spec)
        finally:
            await provider.aclose()
    assert "".join(got) == "through the proxy"
    assert proxy.requests[0].path == "/anthropic/v1/messages"


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made by the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted", "unknown_certificate"])
async def test_https_works_and_an_unknown_certificate_is_refused(certificate, monkeypatch, trusted):
    cert, key = certificate
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    if trusted:
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    else:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    _http._tls.cache_clear()  # the context is built once per process; build it for this test
    try:
        async with FakeModelServer(chunk_count=5, tls=tls) as server:
            assert server.anthropic_base_url.startswith("https://")
            spec, provider = provider_for("opus", server, _http.ReadPacing())
            server.queue_reply(spec.api_id, "over TLS")
            try:
                if trusted:
                    got, _ = await pieces(provider, spec)
                    assert "".join(got) == "over TLS"
                else:
                    with pytest.raises(TransientProviderError, match="CERTIFICATE_VERIFY_FAILED"):
                        await pieces(provider, spec)
            finally:
                await provider.aclose()
    finally:
        _http._tls.cache_clear()


class RawServer:
    """A bare HTTP/1.1 server on 127.0.0.1 for what the fake model server does not do: it answers
    every request with a Chat Completions stream of `words`, then, per `after`, closes the
    connection ("close") or stops sending in the middle of the body ("stall")."""

    def __init__(self, words: list[str], after: str) -> None:
        self.words, self.after = words, after
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length:")
                )
                await reader.readexactly(length)
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    b"transfer-encoding: chunked\r\n\r\n"
                )
                for word in self.words:
                    writer.write(_chunk({"choices": [{"index": 0, "delta": {"content": word}}]}))
                if self.after == "stall":
                    await writer.drain()
                    await asyncio.sleep(30)  # the client's read timeout comes first
                    return
                writer.write(
                    _chunk({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                )
                writer.write(_chunk("[DONE]") + b"0\r\n\r\n")
                await writer.drain()
                if self.after == "close":  # silently, as an idle timeout on a server would
                    await asyncio.sleep(0.05)
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


def _chunk(payload: object) -> bytes:
    data = b"data: " + (payload if isinstance(payload, str) else json.dumps(payload)).encode()
    event = data + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


def openai_provider(base_url: str, timeout: float) -> tuple[object, OpenAIProvider]:
    spec = load_registry().get("gpt4o")
    env = {spec.provider.key_env: "k", spec.provider.base_url_env: base_url}
    return spec, OpenAIProvider(spec.provider, env, timeout=timeout, pacing=_http.ReadPacing())


async def test_a_connection_the_server_closed_while_idle_is_not_reused():
    server = RawServer(["one ", "two"], after="close")
    async with server as base_url:
        spec, provider = openai_provider(base_url, timeout=10)
        try:
            first, _ = await pieces(provider, spec)
            await asyncio.sleep(0.3)  # the server has closed the kept-alive connection meanwhile
            second, _ = await pieces(provider, spec)
        finally:
            await provider.aclose()
    assert "".join(first) == "".join(second) == "one two"
    assert server.connections == 2  # the closed one was dropped, not written to


async def test_a_stream_that_stops_sending_times_out_as_a_lost_connection():
    async with RawServer(["half ", "a "], after="stall") as base_url:
        spec, provider = openai_provider(base_url, timeout=0.5)
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            with pytest.raises(TransientProviderError, match="timed out"):
                await pieces(provider, spec)
        finally:
            await provider.aclose()
    assert loop.time() - began < 5  # the 0.5 s read timeout, not the server's 30 s stall


async def test_nothing_listening_is_a_lost_connection_with_the_reason():
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    spec, provider = openai_provider(f"http://127.0.0.1:{port}/v1", timeout=5)
    try:
        # The reason, not the SDK's bare "Connection error.": asyncio and uvloop word it apart.
        with pytest.raises(
            TransientProviderError, match=r"connection lost: .*(Connect call failed|refused)"
        ):
            await pieces(provider, spec)
    finally:
        await provider.aclose()


def test_after_warming_the_collector_no_longer_walks_the_sdks():
    # In a fresh process: warm() imports both SDKs (some 200,000 objects that live as long as the
    # process), then takes what is alive out of the collector's sight, so that a full collection,
    # which stops every run while it lasts, walks only what the runs themselves create.
    script = (
        "import asyncio, gc\n"
        "from backrooms_engine.providers import ProviderPool\n"
        "before = len(gc.get_objects())\n"
        "asyncio.run(ProviderPool({}).warm())\n"
        "import anthropic, openai\n"
        "print(before, len(gc.get_objects()), gc.get_freeze_count())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    before, after, frozen = map(int, done.stdout.split())
    assert frozen > 100_000  # the SDKs' objects, and everything else alive at that point
    assert after < before  # walked by a full collection: fewer than before the SDKs came in


async def test_a_long_request_waits_for_a_slow_reader_and_a_stalled_one_times_out_and_is_dropped():
    # Far more than the socket buffers hold: the write must wait for the server to read.
    payload = bytes(range(256)) * (32 * 4096)  # 32 MiB
    received: list[bytearray] = []  # per connection, in the order they came
    reading = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        mine = bytearray()
        received.append(mine)
        await reading.wait()
        with contextlib.suppress(ConnectionError):  # the given-up connection is reset
            while len(mine) < len(payload) and (data := await reader.read(1 << 20)):
                mine.extend(data)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    backend = _net.AsyncioBackend(_http.ReadPacing())
    try:
        stalled = await backend.connect_tcp("127.0.0.1", port, timeout=5)
        with pytest.raises(httpcore2.WriteTimeout):  # nobody reads yet: no endless wait
            await stalled.write(payload, timeout=0.3)
        await stalled.aclose()

        stream = await backend.connect_tcp("127.0.0.1", port, timeout=5)
        loop = asyncio.get_running_loop()
        loop.call_later(0.3, reading.set)
        await stream.write(payload, timeout=10)
        for _ in range(100):  # what the kernel still held reaches the server
            if len(received) == 2 and len(received[1]) >= len(payload):
                break
            await asyncio.sleep(0.05)
        await stream.aclose()
    finally:
        server.close()
    assert received[1] == payload  # sent whole, in order
    # The request given up on was dropped, not delivered once the server read again (its
    # sender reported it failed, and the engine may send it again).
    assert len(received[0]) < len(payload)


async def test_tls_on_a_connection_the_server_already_closed_fails_at_once():
    async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(close_at_once, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pacing = _http.ReadPacing()
    loop = asyncio.get_running_loop()
    try:
        stream = await _net.AsyncioBackend(pacing).connect_tcp("127.0.0.1", port, timeout=5)
        await asyncio.sleep(0.2)  # the server's close has come in
        began = loop.time()
        with pytest.raises(httpcore2.ConnectError):
            await stream.start_tls(ssl.create_default_context(), "127.0.0.1", timeout=5)
    finally:
        server.close()
    assert loop.time() - began < 1  # not the 5 s connect timeout
    assert pacing.open == 0  # httpcore does not close a stream whose TLS failed: it closed itself


async def test_data_already_in_is_handed_over_without_pacing_waits():
    # 1 MiB arrives at once; httpcore reads 64 KiB at a time. Under load, each of those reads
    # must not wait for the pacing: the bytes are already here.
    body = b"x" * (1 << 20)

    async def send_all(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(body)
        await writer.drain()
        await asyncio.sleep(5)  # keeps the connection open: no EOF to hurry the reads
        writer.close()

    server = await asyncio.start_server(send_all, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pacing = _http.ReadPacing(ceiling=0.2, load=lambda: 1.0)
    loop = asyncio.get_running_loop()
    try:
        stream = await _net.AsyncioBackend(pacing).connect_tcp("127.0.0.1", port, timeout=5)
        await asyncio.sleep(0.3)  # all of it is in
        began = loop.time()
        got = b""
        for _ in range(64):  # 16 reads of 64 KiB are enough
            got += await stream.read(64 * 1024, timeout=5)
            if len(got) >= len(body):
                break
        took = loop.time() - began
        await stream.aclose()
    finally:
        server.close()
    assert got == body
    assert took < 0.5, took  # about 3 s if every 64 KiB waited 0.2 s


def test_an_idle_connection_the_server_closed_while_the_loop_was_busy_is_not_reused():
    # The server (a thread of its own) answers, then closes the kept-alive connection after 1.2 s
    # of quiet, as a server's keep-alive timeout does; the client's loop is busy at that moment,
    # so the loop has not delivered the close when the next request picks a connection.
    connections: list[int] = []

    def serve(listener: socket.socket) -> None:
        listener.settimeout(10)
        for n in range(2):
            conn, _ = listener.accept()
            connections.append(n)
            with conn:
                conn.settimeout(10)
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, rest = data.partition(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length:")
                )
                while len(rest) < length:
                    rest += conn.recv(65536)
                reply = _chunk({"choices": [{"index": 0, "delta": {"content": "hi"}}]})
                reply += _chunk({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    b"transfer-encoding: chunked\r\n\r\n" + reply + _chunk("[DONE]") + b"0\r\n\r\n"
                )
                time.sleep(1.2)  # then closes, silently

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        server = threading.Thread(target=serve, args=(listener,), daemon=True)
        server.start()
        base_url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"

        async def two_requests() -> list[str]:
            spec, provider = openai_provider(base_url, timeout=10)
            try:
                first, _ = await pieces(provider, spec)
                await asyncio.sleep(1.0)
                time.sleep(0.5)  # the loop is busy while the server closes
                second, _ = await pieces(provider, spec)
            finally:
                await provider.aclose()
            return ["".join(first), "".join(second)]

        texts = asyncio.run(two_requests())
        server.join(timeout=10)
    assert texts == ["hi", "hi"]
    assert connections == [0, 1]  # the closed connection was not written to
