"""The `backrooms` command: AI-to-AI conversations in this terminal, on Discord, Slack or the web.

`main` installs the Ctrl-C and SIGTERM handlers before it imports anything heavy (interrupts.py),
reads and checks the settings the chosen command reads (and only those), then hands over to the
command. Chat surfaces are imported lazily, so `backrooms run` never imports discord.py.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .interrupts import (
    FAILED,
    INTERRUPTED,
    OK,
    SERVICE_CODES,
    TERMINAL_CODES,
    USAGE,
    Interrupts,
    Quit,
)

DEMO_TURNS = 3
DEMO_WEB_TURNS = 10
SERVICES = ("discord", "slack", "serve", "bot", "worker")
RUN_HELP = "a stored run's id (`backrooms runs` lists them)"
EPILOG = (
    "Start with `backrooms demo` (no key, no network). `backrooms COMMAND --help` tells more; "
    "the README lists every setting."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backrooms", description=__doc__.splitlines()[0], epilog=EPILOG
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _run_parser(sub)
    res = sub.add_parser("resume", help="continue a run that a crash or a shutdown interrupted")
    res.add_argument("run_id", type=_run_id, metavar="RUN", help=RUN_HELP)
    cont = sub.add_parser("continue", help="give an ended run more turns")
    cont.add_argument("run_id", type=_run_id, metavar="RUN", help=RUN_HELP)
    cont.add_argument("--turns", type=_positive_int, required=True, help="how many more turns")
    sub.add_parser(
        "demo", help=f"an offline conversation of {DEMO_TURNS} turns: no key, no network"
    )
    tpl = sub.add_parser("templates", help="list the conversation templates")
    tpl.add_argument("--templates-dir", type=_folder, default=None, help="look here first")
    sub.add_parser("models", help="list the model aliases and whether their keys are set")
    _service_parsers(sub)
    _worker_parsers(sub)
    sub.add_parser("runs", help="list stored runs, newest first")
    show = sub.add_parser("show", help="print a stored run's transcript")
    show.add_argument("run_id", type=_run_id, metavar="RUN", help=RUN_HELP)
    show.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="go on printing the run live as the process that drives it goes on, until it ends "
        "or pauses",
    )
    exp = sub.add_parser("export", help="write a stored run as txt, md or json")
    exp.add_argument("run_id", type=_run_id, metavar="RUN", help=RUN_HELP)
    exp.add_argument("--format", choices=("txt", "md", "json"), default="txt")
    exp.add_argument("--output", "-o", type=Path, default=None, help="file (default: stdout)")
    _db_parser(sub)
    _stop_parser(sub)
    return parser


def _stop_parser(sub: argparse._SubParsersAction) -> None:
    stop = sub.add_parser("stop", help="stop a running run, whichever process drives it")
    stop.add_argument("run_id", type=_run_id, metavar="RUN", help=RUN_HELP)
    stop.add_argument(
        "--by", default="the command line", help="who stopped it, as its end will say"
    )


def _run_parser(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run a conversation in this terminal")
    run.add_argument(
        "--lm",
        nargs="+",
        default=["opus", "opus"],
        metavar="MODEL",
        help="participants in turn order (default: opus opus; `backrooms models` lists them)",
    )
    run.add_argument("--template", default="cli", help="conversation template (default: cli)")
    run.add_argument(
        "--max-turns",
        type=_positive_int,
        default=None,
        help="stop after this many turns (default: no limit)",
    )
    run.add_argument("--templates-dir", type=_folder, default=None, help="look here first")
    run.add_argument(
        "--token-budget",
        type=_positive_int,
        default=None,
        help="end the run once its input plus output tokens reach this",
    )
    run.add_argument(
        "--budget-usd",
        type=_dollars,
        default=None,
        help="end the run before a request could take its cost past this many US dollars "
        "(default: BACKROOMS_BUDGET_USD)",
    )
    run.add_argument(
        "--seed",
        default=None,
        help="the offline seats' seed: same seed, same conversation (default: BACKROOMS_SEED)",
    )


def _db_parser(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("db", help="move the store: `backrooms db copy --to URL`")
    action = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    copy = action.add_parser(
        "copy",
        help="copy the SQLite archive (BACKROOMS_DB) into an empty PostgreSQL store, ids and all; "
        "run again, it says whether anything changed",
    )
    copy.add_argument(
        "--to",
        required=True,
        metavar="URL",
        help="the PostgreSQL store: postgresql://user:password@host/database "
        "(the password is never printed)",
    )


def _service_parsers(sub: argparse._SubParsersAction) -> None:
    disc = sub.add_parser("discord", help="run the Discord bot (DISCORD_TOKEN)")
    disc.add_argument(
        "--invite-url", action="store_true", help="print the URL that adds the bot to a server"
    )
    sub.add_parser("slack", help="run the Slack app (SLACK_BOT_TOKEN and SLACK_APP_TOKEN)")
    srv = sub.add_parser("serve", help="the web viewer on PORT (default 8000): archive, live runs")
    srv.add_argument(
        "--host",
        default=None,
        help="address to listen on (default: $BACKROOMS_HOST, else 127.0.0.1)",
    )
    srv.add_argument("--port", type=_port, default=None, help="default: $PORT, else 8000")
    srv.add_argument(
        "--demo",
        action="store_true",
        help=f"also start an offline run of {DEMO_WEB_TURNS} turns to watch live",
    )
    sub.add_parser("bot", help="run every surface that has credentials, and the web viewer on PORT")


def _worker_parsers(sub: argparse._SubParsersAction) -> None:
    work = sub.add_parser("worker", help="drive waiting runs that no chat shows, until SIGTERM")
    work.add_argument(
        "--max-runs",
        type=_positive_int,
        default=None,
        help="the most runs it drives at once (default: BACKROOMS_MAX_RUNS)",
    )
    sub.add_parser("workers", help="list the live processes that drive runs")
    start = sub.add_parser("start", help="store a run for a worker to drive, and return")
    start.add_argument("--lm", nargs="+", required=True, metavar="MODEL", help="participants")
    start.add_argument("--template", default="cli", help="conversation template (default: cli)")
    start.add_argument("--max-turns", type=_positive_int, default=None, help="default: no limit")
    start.add_argument("--templates-dir", type=_folder, default=None, help="look here first")


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("backrooms-relay")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "(not installed)"


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _positive_int(text: str) -> int:
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _dollars(text: str) -> float:
    try:
        value = float(text.strip().removeprefix("$"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be an amount in US dollars such as 0.50, got {text!r}"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 dollars, got {text}")
    return value


def _run_id(text: str) -> int:
    value = _whole(text)
    if not 1 <= value < 2**63:  # SQLite's integers; beyond, no run can have the id
        raise argparse.ArgumentTypeError(f"run ids are whole numbers from 1, got {text}")
    return value


def _port(text: str) -> int:
    value = _whole(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is from 1 to 65535, got {value}")
    return value


def _folder(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        what = "is not a folder" if path.exists() else "does not exist"
        raise argparse.ArgumentTypeError(f"{text} {what}")
    return path


_ENGINE = frozenset({"engine", "models", "templates"})
READS: Mapping[str, frozenset[str]] = {
    "run": _ENGINE,
    "demo": _ENGINE,
    "resume": _ENGINE,
    "continue": _ENGINE,
    "templates": frozenset({"templates"}),
    "models": frozenset({"models"}),
    "show": frozenset({"models"}),  # the actors' colours
    "runs": frozenset(),
    "export": frozenset(),
    "db": frozenset(),  # the store's location alone
    "stop": frozenset(),
    "slack": _ENGINE | {"web", "slack"},
    "serve": _ENGINE | {"web"},
    "worker": _ENGINE,
    "workers": frozenset(),
    "start": _ENGINE,
}
CHAT_TOKENS = (("discord", "DISCORD_TOKEN"), ("slack", "SLACK_BOT_TOKEN"))


def reads(args: argparse.Namespace, env: Mapping[str, str]) -> frozenset[str]:
    """The settings sections a command reads: it checks these before it starts, and only these."""
    if args.command == "discord":
        return frozenset({"discord"}) if args.invite_url else _ENGINE | {"web", "discord"}
    if args.command == "bot":  # Discord and Slack start, and are read, only when their token is set
        return _ENGINE | {"web"} | {name for name, var in CHAT_TOKENS if env.get(var)}
    return READS[args.command]


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    command = next((w for w in words if not w.startswith("-")), None)  # argparse's, but sooner
    interrupts = Interrupts(SERVICE_CODES if command in SERVICES else TERMINAL_CODES)
    interrupts.install()  # first: a signal during the imports below ends with our status too
    try:
        return _dispatch(build_parser().parse_args(words), interrupts)
    except Quit as stop:
        return stop.code
    except KeyboardInterrupt:  # only if a library put Python's own Ctrl-C handler back
        return INTERRUPTED


def _dispatch(args: argparse.Namespace, interrupts: Interrupts) -> int:
    import logging

    from backrooms_engine.errors import BackroomsError

    from . import logs
    from .failures import Unreachable
    from .settings import Settings

    logs.setup(logging.WARNING, sys.stderr)
    try:
        env = Settings.environment()
        settings = Settings.from_mapping(env, reads=reads(args, env))
        return _command(args.command)(args, settings, interrupts)
    except Unreachable as exc:
        print(f"backrooms: error: {exc}", file=sys.stderr)
        return FAILED
    except BackroomsError as exc:
        print(f"backrooms: error: {exc}", file=sys.stderr)
        return USAGE
    except BrokenPipeError:  # `backrooms models | head`: the reader left, nothing is wrong
        sys.stderr.close()
        return OK


def _command(name: str) -> Callable[..., int]:
    if name in ("run", "demo", "resume", "continue"):
        from . import cli_terminal as module
    elif name in ("runs", "show", "export"):
        from . import cli_stored as module
    elif name == "db":
        from . import cli_db as module
    elif name in ("worker", "workers", "start"):
        from . import cli_workers as module
    elif name in ("templates", "models"):
        from . import cli_listings as module
    elif name == "stop":
        from . import cli_control as module
    else:
        from . import cli_services as module
    return getattr(module, f"cmd_{name}")


if __name__ == "__main__":
    raise SystemExit(main())
