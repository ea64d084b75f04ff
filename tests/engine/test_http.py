"""The HTTP under the SDKs, as a user of the providers sees it: streams arrive as they are sent,
connections are kept, proxies and TLS work as the SDKs document, and network failures become the
engine's errors with their reason. Nothing here depends on which transport the SDKs use. Real SDKs
against servers of our own on 127.0.0.1; every test runs on asyncio's loop and on uvloop
(tests/conftest.py)."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backrooms_engine.conversation import ModelRequest
from backrooms_engine.errors import TransientProviderError, UnreachableProviderError
from backrooms_engine.events import ReplyRetrying
from backrooms_engine.providers.anthropic import AnthropicProvider
from backrooms_engine.providers.openai import OpenAIProvider
from backrooms_engine.records import RunSpec, Usage
from backrooms_engine.registry import load_registry
from backrooms_engine.templates import Message
from tests.conftest import fake_env
from tests.fakes.model_server import FakeModelServer
from tests.helpers import RecordingObserver, backrooms, run_to_end, runtime

REQUEST = (Message("user", "hello"),)
FORTY_WORDS = " ".join(f"w{i}" for i in range(40))


def provider_for(alias: str, base_url: str, timeout: float = 30):
    spec = load_registry().get(alias)
    env = {spec.provider.key_env: "test-key", spec.provider.base_url_env: base_url}
    kind = AnthropicProvider if spec.provider.kind == "anthropic" else OpenAIProvider
    return spec, kind(spec.provider, env, timeout=timeout)


def base_url_for(alias: str, server: FakeModelServer) -> str:
    kind = load_registry().get(alias).provider.kind
    return server.anthropic_base_url if kind == "anthropic" else server.openai_base_url


async def pieces(provider, spec) -> tuple[list[str], Usage | None]:
    got: list[str] = []
    usage = None
    async for item in provider.stream(ModelRequest(spec, None, REQUEST)):
        if isinstance(item, Usage):
            usage = item
        else:
            got.append(item)
    return got, usage


async def one_reply(alias: str, base_url: str, read_timeout: float = 30) -> str:
    spec, provider = provider_for(alias, base_url, read_timeout)
    try:
        got, _ = await pieces(provider, spec)
    finally:
        await provider.aclose()
    return "".join(got)


@pytest.mark.parametrize("alias", ["opus", "gpt4o"])
async def test_a_stream_goes_up_piece_by_piece_as_the_server_sends_it(alias):
    # 20 chunks 25 ms apart: a viewer sees the reply grow, not arrive whole at the end.
    async with FakeModelServer(chunk_count=20, chunk_delay=0.025) as server:
        spec, provider = provider_for(alias, base_url_for(alias, server))
        server.queue_reply(spec.api_id, FORTY_WORDS)
        try:
            got, usage = await pieces(provider, spec)
        finally:
            await provider.aclose()
    assert "".join(got) == FORTY_WORDS
    assert len(got) >= 15  # each chunk goes up as it came; the odd two may arrive together
    assert usage is not None and usage.output_tokens


@pytest.mark.parametrize("alias", ["opus", "gpt4o"])
async def test_many_concurrent_streams_through_one_provider_all_arrive_whole(alias):
    async with FakeModelServer(chunk_count=5, chunk_delay=0.02) as server:
        spec, provider = provider_for(alias, base_url_for(alias, server))
        try:
            results = await asyncio.gather(*(pieces(provider, spec) for _ in range(80)))
        finally:
            await provider.aclose()
    assert all("".join(got) and usage and usage.output_tokens for got, usage in results)
    assert len(server.requests) == 80


class RawServer:
    """A bare HTTP/1.1 server on 127.0.0.1 for what the fake model server does not do: it answers
    every request with a Chat Completions stream of `words`, then, per `after`, keeps the
    connection ("keep"), closes it soon after, as an idle timeout on a server would ("close"),
    stops sending in the middle of the body on the first request ("stall"), or never ends the
    body but keeps it alive: with SSE comments, as OpenRouter does while it waits ("comments"),
    or with one more word every tenth of a second ("trickle")."""

    def __init__(self, words: list[str], after: str) -> None:
        self.words, self.after = words, after
        self.connections = 0
        self.requests = 0
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
            for _ in range(100):  # requests on one kept-alive connection, bounded
                await _read_request(reader)
                self.requests += 1
                writer.write(completion_head() + b"".join(map(_word, self.words)))
                if self.after == "stall" and self.requests == 1:
                    await writer.drain()
                    await asyncio.sleep(30)  # the client's timeout comes first
                    return
                if self.after in ("comments", "trickle"):
                    await self._never_end(writer)
                    return
                writer.write(completion_end())
                await writer.drain()
                if self.after == "close":
                    await asyncio.sleep(0.05)
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    async def _never_end(self, writer: asyncio.StreamWriter) -> None:
        for _ in range(600):  # a minute at most; the client's deadline comes first
            comment = b": OPENROUTER PROCESSING\n\n"
            writer.write(b"%x\r\n%s\r\n" % (len(comment), comment))
            if self.after == "trickle":
                writer.write(_word("more "))
            await writer.drain()
            await asyncio.sleep(0.1)


async def _read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    await reader.readexactly(_content_length(head))


def _content_length(head: bytes) -> int:
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def _chunk(payload: object) -> bytes:
    data = b"data: " + (payload if isinstance(payload, str) else json.dumps(payload)).encode()
    event = data + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


def _word(word: str) -> bytes:
    return _chunk({"choices": [{"index": 0, "delta": {"content": word}}]})


def completion_head() -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    )


def completion_end() -> bytes:
    finish = _chunk({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return finish + _chunk("[DONE]") + b"0\r\n\r\n"


async def test_consecutive_requests_reuse_the_kept_alive_connection():
    server = RawServer(["one ", "two"], after="keep")
    async with server as base_url:
        spec, provider = provider_for("gpt4o", base_url, timeout=10)
        try:
            texts = ["".join((await pieces(provider, spec))[0]) for _ in range(3)]
        finally:
            await provider.aclose()
    assert texts == ["one two"] * 3
    assert server.connections == 1


async def test_a_connection_the_server_closed_while_idle_is_not_a_failure():
    server = RawServer(["one ", "two"], after="close")
    async with server as base_url:
        spec, provider = provider_for("gpt4o", base_url, timeout=10)
        try:
            first, _ = await pieces(provider, spec)
            await asyncio.sleep(0.3)  # the server has closed the kept-alive connection meanwhile
            second, _ = await pieces(provider, spec)
        finally:
            await provider.aclose()
    assert "".join(first) == "".join(second) == "one two"
    assert server.connections == 2  # the closed one was dropped, not written to


async def test_a_stream_that_stops_sending_times_out_as_a_transient_error():
    async with RawServer(["half ", "a "], after="stall") as base_url:
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(TransientProviderError, match="connection lost"):
            await one_reply("gpt4o", base_url, read_timeout=0.5)
    assert loop.time() - began < 5  # the 0.5 s timeout, not the server's 30 s stall


async def test_a_stalled_stream_is_retried_and_the_reply_completes(tmp_path):
    # Through the whole engine: the first attempt stalls, the retry gets the reply; nothing of
    # the stalled attempt is kept.
    async with FakeModelServer() as model_server, RawServer(["all ", "of it"], "stall") as url:
        env = fake_env(model_server, tmp_path) | {
            "OPENAI_BASE_URL": url,
            "BACKROOMS_READ_TIMEOUT": "0.5",
        }
        rec = RecordingObserver()
        async with runtime(env) as rt:
            run_id, end = await run_to_end(rt, RunSpec(models=("gpt4o", "opus"), max_turns=1), rec)
            stored = await rt.archive.replies(run_id)
    assert end.reason == "max_turns"
    assert stored[0].text == "all of it"
    assert len(rec.of(ReplyRetrying)) == 1


@pytest.mark.parametrize("after", ["comments", "trickle"])
async def test_a_stream_that_never_ends_meets_the_reply_deadline(tmp_path, after):
    # Bytes keep coming, so no read ever times out; the whole reply has a deadline, and the run
    # ends with a message that names it and its setting, once, without a retry.
    server = RawServer(["a "], after=after)
    async with FakeModelServer() as model_server, server as url:
        env = fake_env(model_server, tmp_path) | {
            "OPENAI_BASE_URL": url,
            "BACKROOMS_REQUEST_TIMEOUT": "1",
        }
        loop = asyncio.get_running_loop()
        began = loop.time()
        async with runtime(env) as rt:
            run_id, end = await run_to_end(rt, RunSpec(models=("gpt4o", "opus"), max_turns=1))
            stored = await rt.archive.replies(run_id)
        took = loop.time() - began
    assert end.reason == "error"
    assert end.detail == (
        "gpt4o (openai): no complete reply within 1 s (BACKROOMS_REQUEST_TIMEOUT)"
    )
    assert stored == []  # nothing of the unfinished reply is kept
    assert server.requests == 1
    assert took < 5


async def test_the_terminal_says_the_deadline_passed_in_one_line(tmp_path):
    async with FakeModelServer() as model_server, RawServer(["a "], "comments") as url:
        env = fake_env(model_server, tmp_path) | {
            "OPENAI_BASE_URL": url,
            "BACKROOMS_REQUEST_TIMEOUT": "1",
        }
        code, out, err = await backrooms(
            "run", "--lm", "gpt4o", "opus", "--max-turns", "1", env=env, cwd=tmp_path
        )
    line = "gpt4o (openai): no complete reply within 1 s (BACKROOMS_REQUEST_TIMEOUT)"
    assert line in out + err
    assert "ReadTimeout" not in out + err and "Traceback" not in err
    assert code != 0


def _free_port() -> int:
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_nothing_listening_names_the_address_and_the_reason():
    url = f"http://127.0.0.1:{_free_port()}/v1"
    # The reason and where, not the SDK's bare "Connection error.": retried for a few seconds
    # only (an unreachable error), then the run ends with this message (tests/bot/).
    with pytest.raises(UnreachableProviderError) as caught:
        await one_reply("gpt4o", url, read_timeout=5)
    assert str(caught.value) == (
        f"cannot connect to {url} (connection refused); is the server running? (OPENAI_BASE_URL)"
    )


async def test_a_name_that_does_not_resolve_names_the_address():
    url = "http://models.invalid/v1"  # RFC 6761: never resolves
    with pytest.raises(UnreachableProviderError, match=r"cannot connect to .* \(name not found\)"):
        await one_reply("gpt4o", url, read_timeout=5)


class LoopbackProxy:
    """A forward proxy of our own on 127.0.0.1: it records each request line (`GET http://...`
    for plain HTTP, `CONNECT host:port` for a tunnel) and relays the bytes to `upstream`, whatever
    host the request named, so a request that names a host nobody can reach arrives only
    through the proxy."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.request_lines: list[str] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            line = head.split(b"\r\n", 1)[0].decode()
            self.request_lines.append(line)
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            if line.startswith("CONNECT "):
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                up_writer.write(head)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.mark.parametrize("alias", ["opus", "gpt4o"])
async def test_http_proxy_from_the_environment_carries_the_requests(monkeypatch, alias):
    async with FakeModelServer(chunk_count=3) as server:
        proxy = LoopbackProxy(("127.0.0.1", server.port))
        async with proxy as proxy_url:
            monkeypatch.setenv("HTTP_PROXY", proxy_url)
            monkeypatch.delenv("NO_PROXY", raising=False)
            monkeypatch.delenv("no_proxy", raising=False)
            # A host no resolver knows (RFC 6761): only the proxy can deliver.
            kind = load_registry().get(alias).provider.kind
            path = "/anthropic" if kind == "anthropic" else "/openai/v1"
            spec = load_registry().get(alias)
            server.queue_reply(spec.api_id, "through the proxy")
            text = await one_reply(alias, f"http://models.invalid{path}")
    assert text == "through the proxy"
    assert proxy.request_lines[0].startswith(f"POST http://models.invalid{path}/")
    assert len(server.requests) == 1


async def test_no_proxy_names_the_hosts_that_are_reached_directly(monkeypatch):
    async with FakeModelServer(chunk_count=3) as server:
        proxy = LoopbackProxy(("127.0.0.1", server.port))
        async with proxy as proxy_url:
            monkeypatch.setenv("HTTP_PROXY", proxy_url)
            monkeypatch.setenv("NO_PROXY", "127.0.0.1")
            text = await one_reply("opus", server.anthropic_base_url)
    assert text
    assert proxy.request_lines == []


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


@pytest.fixture
async def tls_server(certificate) -> AsyncIterator[FakeModelServer]:
    cert, key = certificate
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    async with FakeModelServer(chunk_count=5, tls=tls) as server:
        assert server.anthropic_base_url.startswith("https://")
        yield server


async def test_https_to_a_trusted_certificate_works(tls_server, certificate, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    tls_server.queue_reply(load_registry().get("opus").api_id, "over TLS")
    assert await one_reply("opus", tls_server.anthropic_base_url) == "over TLS"


async def test_https_to_an_unknown_certificate_is_refused(tls_server, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with pytest.raises(TransientProviderError, match=r"(?i)certificate verify failed"):
        await one_reply("opus", tls_server.anthropic_base_url)
    assert tls_server.requests == []  # nothing was sent to a server that could not prove itself


async def test_https_through_a_proxy_tunnels_and_still_verifies(
    tls_server, certificate, monkeypatch
):
    proxy = LoopbackProxy(("127.0.0.1", tls_server.port))
    async with proxy as proxy_url:
        monkeypatch.setenv("HTTPS_PROXY", proxy_url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
        tls_server.queue_reply(load_registry().get("opus").api_id, "tunnelled")
        text = await one_reply("opus", tls_server.anthropic_base_url)
    assert text == "tunnelled"
    assert proxy.request_lines == [f"CONNECT 127.0.0.1:{tls_server.port} HTTP/1.1"]


async def test_tls_to_a_server_that_closes_at_once_fails_at_once():
    async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(close_at_once, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    began = loop.time()
    try:
        with pytest.raises(TransientProviderError, match="connection lost"):
            await one_reply("opus", f"https://127.0.0.1:{port}/anthropic", read_timeout=5)
    finally:
        server.close()
    assert loop.time() - began < 2  # not the 5 s timeout


def test_a_connection_closed_while_the_loop_was_busy_costs_at_most_one_transient_retry():
    # The server (a thread of its own) answers, then closes the kept-alive connection after 1.2 s
    # of quiet, as a server's keep-alive timeout does; the client's loop is busy at that moment,
    # so the loop has not seen the close when the next request picks a connection. aiohttp does
    # not resend a POST on its own (RFC 9112, 9.3.1), so that request may fail: as a transient
    # error, which the engine retries, never as the end of the run.
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
                while len(rest) < _content_length(head):
                    rest += conn.recv(65536)
                conn.sendall(completion_head() + _word("hi") + completion_end())
                time.sleep(1.2)  # then closes, silently

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        server = threading.Thread(target=serve, args=(listener,), daemon=True)
        server.start()
        base_url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"

        async def two_replies() -> tuple[list[str], int]:
            spec, provider = provider_for("gpt4o", base_url, timeout=10)
            retries = 0
            try:
                first, _ = await pieces(provider, spec)
                await asyncio.sleep(1.0)
                time.sleep(0.5)  # the loop is busy while the server closes
                try:
                    second, _ = await pieces(provider, spec)
                except TransientProviderError:
                    retries += 1  # what the engine does with it: ask again
                    second, _ = await pieces(provider, spec)
            finally:
                await provider.aclose()
            return ["".join(first), "".join(second)], retries

        texts, retries = asyncio.run(two_replies())
        server.join(timeout=10)
    assert texts == ["hi", "hi"]
    assert retries <= 1
    assert len(connections) == 2  # each reply had its own connection; none was answered twice


async def test_a_world_interface_that_never_answers_says_it_timed_out():
    # A timeout's own message is empty: the reason names the timeout rather than ending in ": ".
    from backrooms_engine.providers.world import WorldInterfaceProvider

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)  # the client's 0.3 s deadline comes first
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    spec = load_registry().get("cli")
    env = {spec.provider.base_url_env: f"http://127.0.0.1:{port}"}
    provider = WorldInterfaceProvider(spec.provider, env, timeout=0.3)
    try:
        with pytest.raises(TransientProviderError) as caught:
            await pieces(provider, spec)
    finally:
        await provider.aclose()
        server.close()
    assert str(caught.value).endswith("/v1/chat/completions: TimeoutError")
