"""The explorer: a line or two of musing, then one command."""

from __future__ import annotations

import re

from ._markov import _chain, _data
from ._view import STOP, _find_command, _stops, _View

_ONE_LINE = re.compile(r"nothing else|nothing before or after|one (?:command )?per message", re.I)
_FILE_NAME = re.compile(r"(?<![\w/.-])([\w+-]+\.(?:txt|md|log|cfg|dat|sh|exe|bin|db|wav))\b")
_DIR_NAME = re.compile(r"(?:^|\s|── )([\w+-]+)/(?=\s|$)", re.MULTILINE)
_LONG_DIR = re.compile(r"^d[rwx-]{9}\s.*\s([\w+-]+)\s*$", re.MULTILINE)


def _explore(view: _View) -> str:
    one_line = bool(_ONE_LINE.search(view.system))
    musing = "" if one_line else _chain("explorer").prose(view.rng, view.rng.randint(14, 40))
    if _stops(view):
        return f"{musing}\n\n{STOP}" if musing else STOP
    command = _next_command(view)
    if one_line:
        return command
    if view.rng.random() < 0.25:
        return f"{musing}\n\n{command}"
    return f"{musing}\n\n```\n{command}\n```"


def _next_command(view: _View) -> str:
    rng, data = view.rng, _data()
    if "exo query" in view.system:
        return _exo_command(view)
    partner = re.search(r"`write (\w+) <", view.system)
    if partner and rng.random() < 0.25:
        words = _chain("explorer").sentence(rng, 14)
        return rng.choice([f"wall {words}", f"write {partner.group(1)} {words}"])
    recent = [_find_command(m) for m in view.own[-3:]]
    if recent and recent[-1].startswith("cd ") and rng.random() < 0.7:
        return "ls -la"
    last = view.last_user
    found = [
        f"./{f}" if f.endswith((".sh", ".exe")) else f"cat {f}" for f in _FILE_NAME.findall(last)
    ]
    found += [f"cd {d}" for d in _DIR_NAME.findall(last) + _LONG_DIR.findall(last)]
    pool = found if found and rng.random() < 0.65 else data["explorer_commands"]
    return rng.choice([c for c in pool if c not in recent] or pool)


def _exo_command(view: _View) -> str:
    rng, data = view.rng, _data()
    kind = rng.choice(data["exo_commands"])
    if kind in ("exo query", "exo create_note"):
        return f"{kind} {_chain('explorer').sentence(rng, 24)}"
    if kind == "search query":
        return f"{kind} {rng.choice(data['search_topics'])}"
    return kind


# Command words the explorer's messages are searched for (the terminal answers more than these).
