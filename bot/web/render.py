"""How model text is shown: prose in the page's font, terminal output and ASCII art in monospace,
and each actor in its registry colour.

Nothing here builds HTML: the templates autoescape every value and the page's script sets text with
`textContent`, so a reply is always text, whatever it contains.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from backrooms_engine.records import Reply, RunEnd
from backrooms_engine.registry import Registry

from ..faces import distinct_colours
from ..text import fence_art

Kind = Literal["prose", "mono"]
Segment = tuple[Kind, str]

DEFAULT_COLOUR = "#9e9e9e"
# The registry is the operator's file, but its colours land in a stylesheet: accept only a hex
# colour or a plain colour name, so a typo cannot break (or restyle) the page.
_COLOUR = re.compile(r"#[0-9a-fA-F]{3,8}|[a-zA-Z]{3,20}")
_OPENER = re.compile(r" {0,3}(`{3,})[^`]*")  # CommonMark backtick fences, as bot/text.py reads them
_CLOSER = re.compile(r" {0,3}(`{3,})\s*")
_PROMPT = re.compile(r"[\w.-]+@[\w.-]+:\S*[$#]")  # user@host:~/path$, how terminals end a screen


def segments(text: str) -> list[Segment]:
    """Cut a reply into runs of prose and monospace lines, as a reader would want them.

    - A reply that ends at a shell prompt (`user@host:~$`) is a terminal's screen: all monospace.
    - The model's own code fences are code blocks: their lines monospace, the fence lines hidden
      (as Discord and Slack show them).
    - Runs of terminal output or ASCII art are monospace too: the ones the chat surfaces fence
      (`bot.text.fence_art`).
    Blank prose lines at a cut are dropped. The downloads keep the exact text."""
    lines = text.split("\n")
    if _ends_at_prompt(lines):
        return [("mono", text.strip("\n"))]
    out: list[Segment] = []
    for kind, chunk in _group(zip(_line_kinds(lines), lines, strict=True)):
        body = "\n".join(chunk)
        if kind == "prose":
            body = body.strip("\n")
            if not body.strip():
                continue
        out.append((kind, body))
    return out


def _ends_at_prompt(lines: list[str]) -> bool:
    filled = [line for line in lines if line.strip()]
    return bool(filled) and _PROMPT.fullmatch(filled[-1].strip()) is not None


def _line_kinds(lines: list[str]) -> list[str]:
    """Per line of the reply: prose, mono, or fence (a fence line of the model's, hidden).
    `fence_art` only ever inserts "```" lines, so walking its output beside the reply pairs up
    every original line."""
    fenced = fence_art("\n".join(lines)).split("\n")
    kinds: list[str] = []
    for line, kind in zip(fenced, _fenced_kinds(fenced), strict=True):
        if len(kinds) < len(lines) and line == lines[len(kinds)]:
            kinds.append(kind)
    kinds += ["prose"] * (len(lines) - len(kinds))  # never reached; a safe default all the same
    return kinds


def _fenced_kinds(lines: list[str]) -> Iterable[str]:
    ticks = 0  # the open fence's length, 0 outside a fence
    for line in lines:
        if ticks:
            closer = _CLOSER.fullmatch(line)
            if closer and len(closer[1]) >= ticks:
                ticks = 0
                yield "fence"
            else:
                yield "mono"
        elif opener := _OPENER.fullmatch(line):
            ticks = len(opener[1])
            yield "fence"
        else:
            yield "prose"


def _group(items: Iterable[tuple[str, str]]) -> Iterable[tuple[Kind, list[str]]]:
    """Consecutive lines of one kind; a fence line ends a group and is left out."""
    kind: Kind = "prose"
    chunk: list[str] = []
    for this, line in items:
        if this == "fence" or this != kind:
            if chunk:
                yield kind, chunk
            chunk = []
            if this == "fence":
                continue
            kind = "mono" if this == "mono" else "prose"
        chunk.append(line)
    if chunk:
        yield kind, chunk


def reply_payload(reply: Reply) -> dict[str, Any]:
    """A finished reply as the live feed sends it: the page's script builds it with textContent."""
    return {
        "seq": reply.seq,
        "turn": reply.turn,
        "actor": reply.actor,
        "text": reply.text,
        "segments": [[kind, body] for kind, body in segments(reply.text)],
        "cut_off": reply.cut_off,  # the API ended it at max_tokens: the page marks it
    }


DRIVERS = "backrooms bot, or backrooms worker"  # the processes that claim runs of the web


def idle_note(state: str, run_id: int) -> str:
    """Why a run that has not ended is not moving, for its page: queued (never claimed),
    waiting (claimed once, nobody holds its lease now) or paused (ARCHITECTURE.md, run states)."""
    if state == "queued":
        return f"queued: waiting for a driving process ({DRIVERS})"
    if state == "waiting":
        return f"waiting: no process drives it right now; a driving process ({DRIVERS}) claims it"
    return f"paused: nobody drives it until it is resumed (backrooms resume {run_id})"


def end_label(end: RunEnd) -> str:
    """The status word of an ended run (or a paused one: a shutdown is not an end)."""
    labels = {"ctrl_c": "^C^C", "max_turns": "turn limit", "shutdown": "paused"}
    return labels.get(end.reason, end.reason)


# -- colours -----------------------------------------------------------------------------------


def colour_class(alias: str) -> str:
    """A CSS class per model alias; the stylesheet /colours.css gives each its registry colour.
    (Colours live in a stylesheet, not in style attributes, so the CSP can forbid inline styles.)"""
    return "c-" + hashlib.sha256(alias.encode()).hexdigest()[:12]


def safe_colour(colour: str) -> str:
    return colour if _COLOUR.fullmatch(colour) else DEFAULT_COLOUR


# A run may seat one model several times (`opus opus`): each further seat of an alias gets a
# shade of its colour of its own (bot/faces.py), up to this many seats of one alias.
SEATS_PER_ALIAS = 8


def colours_css(registry: Registry) -> str:
    rules = []
    for alias, spec in sorted(registry.models.items()):
        shades = distinct_colours([safe_colour(spec.colour)] * SEATS_PER_ALIAS)
        rules.append(f".{colour_class(alias)} {{ --actor: {shades[0]}; }}")
        rules += [
            f".{colour_class(alias)}-{n} {{ --actor: {shade}; }}"
            for n, shade in enumerate(shades[1:], start=1)
        ]
    return "\n".join(rules) + "\n"


def actor_classes(participants: Iterable[Any], registry: Registry) -> Mapping[str, str]:
    """Actor name -> colour class, for the replies of one run: a further seat of the same colour
    (the same alias, or another the registry gives that colour) gets the next shade, so no two
    seats of a run look alike. Shade n of an alias is shade n of its colour, whatever the alias."""
    classes: dict[str, str] = {}
    seen: dict[str, int] = {}
    for p in participants:
        spec = registry.models.get(p.alias)
        key = safe_colour(spec.colour).lower() if spec is not None else f"alias {p.alias}"
        n = seen.get(key, 0)
        seen[key] = n + 1
        base = colour_class(p.alias)
        classes[p.actor] = base if n == 0 or n >= SEATS_PER_ALIAS else f"{base}-{n}"
    return classes
