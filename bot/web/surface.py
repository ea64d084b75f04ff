"""The web surface: the viewer served by uvicorn inside the service's own event loop.

It shares the process (and so the RunManager and the store) with the chat surfaces, so live text
reaches the page through the manager's tap, and runs started from the page are ordinary runs of
surface "web". bot/service.py owns SIGTERM and SIGINT: uvicorn's own signal capture is turned off.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Iterator, Sequence

import uvicorn
from starlette.applications import Starlette

from backrooms_engine.errors import ConfigError
from backrooms_engine.ports import Observer
from backrooms_engine.records import RunRecord, RunSpec

from ..runtime import Runtime
from ..settings import Settings
from .app import create_app
from .broker import LiveBroker
from .render import DRIVERS

log = logging.getLogger(__name__)

DEFAULT_PORT = 8000
# `backrooms serve` is for this machine until someone asks for more (BACKROOMS_HOST or --host);
# `backrooms bot` is what a Procfile platform runs, and its router reaches $PORT from outside.
LOCAL_HOST = "127.0.0.1"
ALL_HOSTS = "0.0.0.0"
START_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0  # open streams are ended first, so this is only for stuck connections


class _Server(uvicorn.Server):
    """uvicorn.Server without its signal handlers: serve() would replace the service's own
    (uvicorn 0.54 installs them with signal.signal in capture_signals, even in a running loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class WebSurface:
    name = "web"

    def __init__(
        self,
        settings: Settings,
        host: str | None = None,
        port: int | None = None,
        *,
        default_host: str = LOCAL_HOST,
        demo_turns: int | None = None,
        drives: bool = True,
    ):
        """The address is `host` (--host), else BACKROOMS_HOST, else `default_host`.
        `demo_turns`: once listening, start an offline run of that many turns to watch live
        (`backrooms serve --demo`); its page is `demo_url`. `drives=False`: the start form
        queues runs for a driving process (`backrooms serve`) instead of driving them here."""
        self.settings = settings
        self.host = host or settings.host or default_host
        self.port = (settings.port or DEFAULT_PORT) if port is None else port
        self.demo_turns = demo_turns
        self.demo_url: str | None = None
        self.drives = drives
        self.broker = LiveBroker()
        self.app: Starlette | None = None
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """Where the viewer listens (the real port once started, if 0 asked for a free one)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def local_only(self) -> bool:
        return self.host in ("localhost", "::1") or self.host.startswith("127.")

    @property
    def listening(self) -> bool:
        """Whether the viewer has started and takes requests (until it is closed)."""
        return self._server is not None and self._server.started and not self._server.should_exit

    async def start(self, rt: Runtime) -> None:
        sock = self._bind()
        self.app = create_app(rt, self.broker, drives=self.drives)
        rt.manager.add_tap(self.broker.observer_for)
        config = uvicorn.Config(
            self.app,
            log_config=None,  # no dictConfig of its own: its records go to bot/logs.py's handler
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=CLOSE_TIMEOUT,
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="web server")
        await self._wait_started()
        if self.local_only:
            log.info(
                "web viewer on %s (this machine only; BACKROOMS_HOST=0.0.0.0 opens it)", self.url
            )
        else:
            log.info("web viewer on %s", self.url)
        if not self.drives:
            log.info("runs started here are queued: %s claims them", DRIVERS)
        if self.demo_turns is not None:
            await self._start_demo(rt, self.demo_turns)

    async def _start_demo(self, rt: Runtime, turns: int) -> None:
        spec = RunSpec(
            models=("offline", "offline"),
            template="cli",
            max_turns=turns,
            started_by="demo",
            surface=self.name,
            space=self.name,
        )
        handle = await rt.manager.start(spec)
        self.demo_url = f"{self.settings.public_url or self.url}/runs/{handle.id}"
        log.info("demo run %s: watch it live at %s", handle.id, self.demo_url)

    def _bind(self) -> socket.socket:
        """Bind here rather than in uvicorn, which answers a taken port with sys.exit(1): that
        would end the whole service from inside a task instead of reporting a clear error."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            taken = exc.errno == errno.EADDRINUSE
            fix = "set PORT to another port" if taken else "check BACKROOMS_HOST (or --host)"
            raise ConfigError(
                f"the web viewer cannot listen on {self.host}:{self.port}: "
                f"{(exc.strerror or str(exc)).lower()}; {fix}"
            ) from None
        self.port = sock.getsockname()[1]  # the real port when 0 asked for a free one
        return sock

    async def _wait_started(self) -> None:
        assert self._server is not None and self._task is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what went wrong
                raise ConfigError("the web viewer stopped as it started")
            if loop.time() > deadline:
                raise ConfigError(f"the web viewer did not start in {START_TIMEOUT:.0f} s")
            await asyncio.sleep(0.02)

    async def observers_for(self, record: RunRecord) -> Sequence[Observer]:
        return []  # a resumed web run needs no poster: the tap shows it like every other run

    def shows(self, record: RunRecord) -> bool:
        return True  # the web is one space: every viewer shows every run

    async def stop_accepting(self) -> None:
        if self.app is not None:
            self.app.state.web.accepting = False

    async def close(self) -> None:
        self.broker.close()  # ends every event stream, so uvicorn has no open stream to wait on
        if self._server is not None and self._task is not None and not self._task.done():
            self._server.should_exit = True
            try:
                await asyncio.wait_for(self._task, CLOSE_TIMEOUT + 2)
            except TimeoutError:
                log.warning("the web viewer did not stop in time")
