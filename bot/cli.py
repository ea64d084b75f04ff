"""The `backrooms` console script: the composition root.

Each subcommand builds what it needs from Settings; chat surfaces are imported lazily so that
`backrooms run` never imports discord.py or slack-bolt.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from backrooms_engine import export, templates
from backrooms_engine.errors import BackroomsError, ConfigError
from backrooms_engine.events import ReplyDelta, ReplyFinished, ReplyStarted, RunEnded, RunStarted
from backrooms_engine.manager import RunHandle
from backrooms_engine.records import RunEnd, RunRecord, RunSpec
from backrooms_engine.registry import Registry, load_registry
from backrooms_engine.store import SqliteStore

from . import eventloop, logs
from .faces import distinct_colours
from .runtime import Runtime, open_runtime, template_dirs
from .settings import Settings
from .terminal import TerminalPrinter

DEMO_TURNS = 3
DEMO_WEB_TURNS = 10


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="backrooms", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a conversation in this terminal")
    run.add_argument(
        "--lm",
        nargs="+",
        default=["opus", "opus"],
        metavar="MODEL",
        help="participants in turn order (default: opus opus)",
    )
    run.add_argument("--template", default="cli", help="conversation template (default: cli)")
    run.add_argument(
        "--max-turns",
        type=_positive_int,
        default=None,
        help="stop after this many turns (default: no limit)",
    )
    run.add_argument(
        "--templates-dir", type=Path, default=None, help="look for templates here first"
    )
    run.add_argument(
        "--token-budget",
        type=_positive_int,
        default=None,
        help="end the run once its input plus output tokens reach this",
    )

    res = sub.add_parser("resume", help="continue a run that a crash or a shutdown interrupted")
    res.add_argument("run_id", type=int, metavar="RUN")
    cont = sub.add_parser("continue", help="give an ended run more turns")
    cont.add_argument("run_id", type=int, metavar="RUN")
    cont.add_argument("--turns", type=_positive_int, required=True, help="how many more turns")

    sub.add_parser(
        "demo", help=f"an offline conversation of {DEMO_TURNS} turns: no key, no network"
    )

    tpl = sub.add_parser("templates", help="list the conversation templates")
    tpl.add_argument("--templates-dir", type=Path, default=None)
    sub.add_parser("models", help="list the model aliases and whether their keys are set")

    disc = sub.add_parser("discord", help="run the Discord bot (DISCORD_TOKEN)")
    disc.add_argument(
        "--invite-url", action="store_true", help="print the URL that adds the bot to a server"
    )
    sub.add_parser("slack", help="run the Slack app (SLACK_BOT_TOKEN and SLACK_APP_TOKEN)")
    srv = sub.add_parser("serve", help="the web viewer on PORT (default 8000): archive, live runs")
    srv.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all)")
    srv.add_argument("--port", type=_positive_int, default=None, help="default: $PORT, else 8000")
    srv.add_argument(
        "--demo",
        action="store_true",
        help=f"also start an offline run of {DEMO_WEB_TURNS} turns to watch live",
    )
    sub.add_parser("bot", help="run every surface that has credentials, and the web viewer on PORT")

    sub.add_parser("runs", help="list stored runs, newest first")
    show = sub.add_parser("show", help="print a stored run's transcript")
    show.add_argument("run_id", type=int, metavar="RUN")
    exp = sub.add_parser("export", help="write a stored run as txt, md or json")
    exp.add_argument("run_id", type=int, metavar="RUN")
    exp.add_argument("--format", choices=export.FORMATS, default="txt")
    exp.add_argument("--output", "-o", type=Path, default=None, help="file (default: stdout)")
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(logging.WARNING, sys.stderr)
    try:
        settings = Settings.load()
        return COMMANDS[args.command](args, settings)
    except BackroomsError as exc:
        print(f"backrooms: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `backrooms models | head`: the reader left, nothing is wrong
        sys.stderr.close()
        return 0


# -- conversations in this terminal ------------------------------------------------------------


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    spec = RunSpec(
        models=tuple(args.lm),
        template=args.template,
        max_turns=args.max_turns,
        token_budget=args.token_budget,
    )

    async def start(rt: Runtime, printer: TerminalPrinter) -> RunHandle:
        return await rt.manager.start(spec, [printer])

    return eventloop.run(
        _in_terminal(settings, start, spec.models, args.templates_dir), settings.event_loop
    )


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    spec = RunSpec(
        models=("offline", "offline"), template="cli", max_turns=DEMO_TURNS, started_by="demo"
    )

    async def start(rt: Runtime, printer: TerminalPrinter) -> RunHandle:
        return await rt.manager.start(spec, [printer])

    return eventloop.run(
        _in_terminal(settings, start, spec.models, None, demo=True), settings.event_loop
    )


def cmd_resume(args: argparse.Namespace, settings: Settings) -> int:
    async def start(rt: Runtime, printer: TerminalPrinter) -> RunHandle:
        return await rt.manager.resume(args.run_id, [printer])

    return eventloop.run(_in_terminal(settings, start, None, None), settings.event_loop)


def cmd_continue(args: argparse.Namespace, settings: Settings) -> int:
    async def start(rt: Runtime, printer: TerminalPrinter) -> RunHandle:
        return await rt.manager.extend(args.run_id, args.turns, [printer])

    return eventloop.run(_in_terminal(settings, start, None, None), settings.event_loop)


async def _in_terminal(
    settings: Settings,
    start: Callable[[Runtime, TerminalPrinter], Awaitable[RunHandle]],
    models: Sequence[str] | None,
    templates_dir: Path | None,
    *,
    demo: bool = False,
) -> int:
    async with open_runtime(settings, templates_dir=templates_dir) as rt:
        printer = TerminalPrinter(_actor_colours(rt.registry, models) if models else {})
        handle = await start(rt, printer)
        if models is None:  # resumed: colours come from the stored participants
            printer.colours.update(_stored_colours(rt.registry, handle.record))
        loop = asyncio.get_running_loop()
        # Ctrl-C stops the run like /stop would (the transcript is kept and closed); SIGTERM pauses
        # it, resumable, as a hosting platform's shutdown would.
        loop.add_signal_handler(signal.SIGINT, handle.stop.set, "terminal (Ctrl-C)")
        loop.add_signal_handler(signal.SIGTERM, handle.stop.set, "shutdown", "shutdown")
        try:
            end = await rt.manager.wait(handle.id)
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGTERM)
        _report(settings, handle, end, demo)
        return 1 if end.reason == "error" else 0


def _report(settings: Settings, handle: RunHandle, end: RunEnd, demo: bool) -> None:
    if end.reason == "shutdown":
        print(f"\nrun {handle.id} paused; `backrooms resume {handle.id}` goes on", file=sys.stderr)
    else:
        print(f"\nrun {handle.id}: {end.summary}", file=sys.stderr)
    print(f"transcript: {handle.record.log_path}  (database: {settings.db_path})", file=sys.stderr)
    if demo:
        print(
            f"see it again: backrooms show {handle.id}   list runs: backrooms runs",
            file=sys.stderr,
        )


def _actor_colours(registry: Registry, aliases: Sequence[str]) -> dict[str, str]:
    from backrooms_engine.conversation import participants_for

    seats = participants_for(registry.resolve(aliases))
    # Two seats of one alias would share the registry's colour: each repeat is shaded apart.
    return dict(
        zip((p.actor for p in seats), distinct_colours([p.spec.colour for p in seats]), strict=True)
    )


# -- listings ----------------------------------------------------------------------------------


def cmd_templates(args: argparse.Namespace, settings: Settings) -> int:
    for name, path in templates.available(template_dirs(settings, args.templates_dir)).items():
        try:
            size = f"{templates.load(path).size} participants"
        except BackroomsError as exc:
            size = f"broken: {exc}"
        print(f"{name:28} {size:16} {path}")
    return 0


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    registry = load_registry(settings.models_file)
    print(f"{'alias':18} {'provider':11} {'api id':30} key")
    for alias in registry.aliases():
        spec = registry.get(alias)
        p = spec.provider
        if not p.key_env:
            key = "not needed"
        elif p.key_is_set(settings.env):
            key = f"{p.key_env} set"
        else:
            key = f"{p.key_env} missing" if p.key_required else f"{p.key_env} optional"
        print(f"{alias:18} {p.name:11} {spec.api_id:30} {key}")
    return 0


# -- stored runs -------------------------------------------------------------------------------


def cmd_runs(args: argparse.Namespace, settings: Settings) -> int:
    return eventloop.run(_list_runs(settings), settings.event_loop)


async def _list_runs(settings: Settings) -> int:
    async with await SqliteStore.open(settings.db_path, owner=False) as store:
        runs = await store.list_runs(limit=100)
    if not runs:
        print(f"no runs yet in {settings.db_path}; try: backrooms demo")
        return 0
    print(
        f"{'id':>5}  {'participants':28} {'template':14} {'status':26} {'turns':>5} "
        f"{'tokens':>9}  started"
    )
    for run in runs:
        who = " ".join(p.alias for p in run.participants)
        status = run.end.reason if run.end else run.status
        if run.end and run.end.reason == "ctrl_c":
            status = f"^C^C by {run.end.actor}"
        tokens = run.input_tokens + run.output_tokens
        started = run.created_at.astimezone().strftime("%Y-%m-%d %H:%M")
        print(
            f"{run.id:>5}  {who[:28]:28} {run.spec.template[:14]:14} {status[:26]:26} "
            f"{run.turns:>5} {tokens:>9}  {started}"
        )
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    return eventloop.run(_show(settings, args.run_id), settings.event_loop)


async def _show(settings: Settings, run_id: int) -> int:
    async with await SqliteStore.open(settings.db_path, owner=False) as store:
        run = await store.get_run(run_id)
        replies = await store.replies(run_id)
    colours = _stored_colours(load_registry(settings.models_file), run)
    printer = TerminalPrinter(colours)
    await printer.handle(RunStarted(run))
    for r in replies:
        await printer.handle(ReplyStarted(run.id, r.seq, r.turn, r.position, r.actor))
        await printer.handle(ReplyDelta(run.id, r.seq, r.position, r.actor, r.text, r.text))
        await printer.handle(ReplyFinished(r))
    if run.end is not None:
        await printer.handle(RunEnded(run.id, run.end))
    return 0


def _stored_colours(registry: Registry, run: RunRecord) -> dict[str, str]:
    seats = [p for p in run.participants if p.alias in registry.models]
    colours = distinct_colours([registry.models[p.alias].colour for p in seats])
    return dict(zip((p.actor for p in seats), colours, strict=True))


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    text = eventloop.run(_export(settings, args.run_id, args.format), settings.event_loop)
    if args.output is None:
        sys.stdout.write(text)
    else:
        try:
            args.output.write_text(text, encoding="utf-8")
        except OSError as exc:  # a missing folder, no permission: say so, no traceback
            raise BackroomsError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


async def _export(settings: Settings, run_id: int, fmt: str) -> str:
    async with await SqliteStore.open(settings.db_path, owner=False) as store:
        run = await store.get_run(run_id)
        return export.render(run, await store.replies(run_id), fmt)


# -- the service ----------------------------------------------------------------------------


def cmd_discord(args: argparse.Namespace, settings: Settings) -> int:
    if args.invite_url:
        from .discord.permissions import invite_url

        print(invite_url(_application_id(settings)))
        return 0
    from .discord import DiscordSurface

    return _serve(settings, [DiscordSurface(settings)])


def cmd_slack(args: argparse.Namespace, settings: Settings) -> int:
    from .slack import SlackSurface

    return _serve(settings, [SlackSurface(settings)])


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from .web import WebSurface

    demo = DEMO_WEB_TURNS if args.demo else None
    return _serve(settings, [WebSurface(settings, host=args.host, port=args.port, demo_turns=demo)])


def cmd_bot(args: argparse.Namespace, settings: Settings) -> int:
    surfaces: list = []
    if settings.discord.token:
        from .discord import DiscordSurface

        surfaces.append(DiscordSurface(settings))
    if settings.slack.bot_token:
        from .slack import SlackSurface

        surfaces.append(SlackSurface(settings))
    if settings.port:
        from .web import WebSurface

        surfaces.append(WebSurface(settings))
    if not surfaces:
        raise ConfigError(
            "nothing to run: set DISCORD_TOKEN, SLACK_BOT_TOKEN (with SLACK_APP_TOKEN) or PORT"
        )
    return _serve(settings, surfaces)


def _serve(settings: Settings, surfaces: list) -> int:
    from .service import serve

    logs.setup(logging.INFO, sys.stdout)
    return eventloop.run(serve(settings, surfaces), settings.event_loop)


def _application_id(settings: Settings) -> int:
    """A bot's application id is its user id, which is the first part of its token, in base64."""
    explicit = settings.env.get("DISCORD_APPLICATION_ID")
    if explicit:
        return int(explicit)
    token = settings.discord.token
    if not token:
        raise ConfigError("set DISCORD_TOKEN (or DISCORD_APPLICATION_ID) to make the invite URL")
    first = token.split(".")[0]
    try:
        return int(base64.b64decode(first + "=" * (-len(first) % 4)).decode())
    except (ValueError, UnicodeDecodeError):
        raise ConfigError(
            "DISCORD_TOKEN does not look like a bot token; set DISCORD_APPLICATION_ID"
        ) from None


COMMANDS = {
    "run": cmd_run,
    "demo": cmd_demo,
    "templates": cmd_templates,
    "models": cmd_models,
    "runs": cmd_runs,
    "show": cmd_show,
    "export": cmd_export,
    "resume": cmd_resume,
    "continue": cmd_continue,
    "discord": cmd_discord,
    "slack": cmd_slack,
    "serve": cmd_serve,
    "bot": cmd_bot,
}

if __name__ == "__main__":
    raise SystemExit(main())
