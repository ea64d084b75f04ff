"""The request as the generators see it: who speaks, what was said, which role to play."""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from typing import Literal

from ...conversation import ModelRequest
from ...templates import Message
from ._markov import _data

_SYSTEM_BLOCK = re.compile(r"<SYSTEM>(.*?)</SYSTEM>\s*", re.DOTALL)
_PROMPT_LINE = re.compile(r"^\s*[A-Za-z_][\w-]*@[\w.-]+:\S*?\s?[$#]\s*$")
_PROMPT = re.compile(r"([A-Za-z_][\w-]*)@([A-Za-z0-9][\w.-]*):([^\s$#]*)[$#]")
_PROMPT_AT_START = re.compile(r"^\s*[A-Za-z_][\w-]*@[\w.-]+:\S*?[$#](?:\s|$)", re.MULTILINE)


STOP = "^C^C"
MIN_REPLIES_TO_STOP = 6
MAX_WORDS = 200  # a demo reads best in short turns, whatever max_tokens allows
Role = Literal["terminal", "explorer", "partner"]


@dataclass(frozen=True)
class _View:
    system: str  # the system prompt, plus any inlined into a message as <SYSTEM>...</SYSTEM>
    messages: tuple[Message, ...]  # with inlined system blocks removed
    rng: random.Random
    seed: str
    cap: int  # rough word cap for the reply

    @property
    def last_user(self) -> str:
        return next((m.content for m in reversed(self.messages) if m.role == "user"), "")

    @property
    def own(self) -> list[str]:
        return [m.content for m in self.messages if m.role == "assistant"]

    @property
    def everything(self) -> str:
        return "\n".join([self.system, *(m.content for m in self.messages)])


def _view(request: ModelRequest, seed: str) -> _View:
    system = [request.system or ""]
    messages = []
    for m in request.messages:
        system += _SYSTEM_BLOCK.findall(m.content)
        messages.append(Message(m.role, _SYSTEM_BLOCK.sub("", m.content)))
    payload = json.dumps(
        [seed, request.system or "", [[m.role, m.content] for m in request.messages]]
    )
    digest = hashlib.sha256(payload.encode("utf-8")).digest()
    cap = max(1, min(MAX_WORDS, request.spec.max_tokens))
    return _View(
        "\n".join(s for s in system if s),
        tuple(messages),
        random.Random(int.from_bytes(digest[:16], "big")),
        seed,
        cap,
    )


def _rng(seed: str, *parts: str) -> random.Random:
    """A generator for one fixed thing (a directory, a file): the same whatever the request."""
    digest = hashlib.sha256(json.dumps([seed, *parts]).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


_NOT_SELF = r"(?!(?:exploring|using|at|in|on|logged|connected|talking|typing|playing)\b)"
_TERMINAL_SELF = re.compile(
    rf"\byou are (?:a |an |the )?(?:{_NOT_SELF}[\w-]+ ){{0,3}}?"
    r"(?:terminal|cli|shell|console|command[- ]line|simulator|machine|computer)\b"
    r"|\b(?:cli|terminal) mood\b|\binterfacing with the simulator\b"
    r"|\bact as (?:a |an )?(?:[\w-]+ ){0,2}?(?:terminal|shell|console|cli)\b",
    re.IGNORECASE,
)
_MACHINE_CUES = re.compile(r"command not found|no such file|permission denied|type 'help'", re.I)


def _role(view: _View) -> Role:
    if _TERMINAL_SELF.search(view.system):
        return "terminal"
    if (
        not view.system
        and STOP not in view.everything
        and _looks_like_command(view.last_user.strip())
    ):
        return "terminal"  # no instructions at all, and a bare command to answer
    if STOP in view.everything and (
        any(_reads_like_output(m) for m in _pending(view))
        or any(_find_command(m) for m in view.own[-2:])
    ):
        return "explorer"
    return "partner"


def _reads_like_output(text: str) -> bool:
    """A shell prompt at the start of a line, or an error only a machine prints."""
    return bool(_PROMPT_AT_START.search(text) or _MACHINE_CUES.search(text))


def _stops(view: _View) -> bool:
    """The ^C^C rule of the module docstring."""
    n = len(view.own)
    if STOP not in view.everything or n < MIN_REPLIES_TO_STOP:
        return False
    return view.rng.random() < min(0.6, 0.2 + 0.1 * (n - MIN_REPLIES_TO_STOP))


def _command_line(text: str) -> str:
    """The command to answer: the one `_find_command` sees, else the message's last line."""
    lines = text.strip().splitlines()
    return _find_command(text) or (lines[-1].strip() if lines else "")


def _find_command(text: str) -> str:
    """The command in a message: the last command-like line of its last code block, else of the
    message, else its last inline `code`; "" when nothing looks like a command."""
    blocks = re.findall(r"```[^\n]*\n(.*?)```", text, re.DOTALL)
    lines = [
        _PROMPT.sub("", line, count=1).strip()
        for line in (blocks[-1] if blocks else text).splitlines()
    ]
    for line in reversed(lines):
        if _looks_like_command(line):
            return line
    spans = re.findall(r"`([^`\n]+)`", text)
    return spans[-1].strip() if spans else ""


_KNOWN = frozenset(
    "ls cd cat less more head tail ps top tree whoami id pwd echo uname date man help history "
    "clear sudo exit logout find grep wall write exo search web ssh open run".split()
)


def _looks_like_command(line: str) -> bool:
    words = line.split()
    if not words or "\n" in line or len(line) > 160 or STOP in line:
        return False
    first = words[0]
    if first in _KNOWN or first.startswith(("./", "/")) or first in _data()["programs"]:
        return True
    return (
        bool(re.fullmatch(r"[a-z][\w.+-]*", first))
        and len(words) <= 6
        and not line.endswith((".", "?", "!", ":", ","))
    )


def _pending(view: _View) -> list[str]:
    """The user messages since this participant last spoke."""
    out: list[str] = []
    for m in reversed(view.messages):
        if m.role == "assistant":
            break
        out.append(m.content)
    return out[::-1]
