"""The offline model: replies made on this machine, with no key, no network and no download.

`OfflineProvider` lets a newcomer watch a conversation before setting up any API key. Each reply is
computed from the request alone:

* **Role.** `_role` reads the request to decide whom to play:
  - the *terminal*, when the system prompt says so ("You are a terminal", upstream's "in a CLI
    mood", "act as a shell", ...): output for the command in the last user message, then a prompt
    such as ``guest@offline:~$`` whose user and host come from the prompt form the system prompt
    shows (default ``simulator@backrooms``);
  - the *explorer*, when the context offers ``^C^C`` as the way out and the last message reads like
    machine output (it ends at a shell prompt, or says "command not found", ...): a sentence or two
    of musing, then one command in a code block (only the command line when the system prompt asks
    for nothing else);
  - otherwise a *conversational partner*: a few short paragraphs, with an ASCII piece in a gallery.
* **Text.** Prose comes from order-2 word Markov chains over the project's own corpus
  (`offline_corpus/`), each built once per process. Listings, process tables, hex dumps, manual
  pages and art come from small generators. A directory's listing and a file's contents are seeded
  by their path, so a listing shown twice matches.
* **Ending.** Any participant but the terminal, in a context that names ``^C^C``, ends its reply
  with ``^C^C`` (which ends the run) once its context holds at least `MIN_REPLIES_TO_STOP` (6) of
  its own replies: with probability 0.2 at 6, 0.1 more for each one after, at most 0.6.
* **Determinism.** All randomness comes from a `random.Random` seeded with SHA-256 of
  ``BACKROOMS_SEED`` (default "0") and the request's system prompt and messages, so a seed and a
  request always give the same reply, whatever else runs. (Python's ``hash()`` is salted per
  process, so it is not used.)
* **Streaming.** The reply is yielded word by word, each word with the whitespace after it, with
  ``BACKROOMS_OFFLINE_DELAY`` seconds (default 0.03) between words; then one `Usage` that counts
  words: those of the system prompt and messages in, those of the reply out.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import posixpath
import random
import re
import shlex
import textwrap
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

from ..conversation import ModelRequest
from ..errors import ConfigError
from ..records import Usage
from ..templates import Message

SEED_ENV = "BACKROOMS_SEED"
DELAY_ENV = "BACKROOMS_OFFLINE_DELAY"
DEFAULT_DELAY = 0.03
STOP = "^C^C"
MIN_REPLIES_TO_STOP = 6
MAX_WORDS = 200  # a demo reads best in short turns, whatever max_tokens allows

Role = Literal["terminal", "explorer", "partner"]


class OfflineProvider:
    def __init__(self, env: Mapping[str, str]):
        self._seed = env.get(SEED_ENV) or "0"
        self._delay = _delay(env)

    async def stream(self, request: ModelRequest) -> AsyncIterator[str | Usage]:
        text = reply(request, self._seed)
        for i, piece in enumerate(_pieces(text)):
            if i:
                await asyncio.sleep(self._delay)
            yield piece
        yield Usage(input_tokens=_request_words(request), output_tokens=len(text.split()))

    async def aclose(self) -> None:
        return None


def _delay(env: Mapping[str, str]) -> float:
    raw = env.get(DELAY_ENV)
    if not raw:
        return DEFAULT_DELAY
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ConfigError(f"{DELAY_ENV} must be a number of seconds >= 0, got {raw!r}")
    return value


def _pieces(text: str) -> list[str]:
    """Words, each with the whitespace after it; the first also carries any leading whitespace."""
    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])


def _request_words(request: ModelRequest) -> int:
    return len((request.system or "").split()) + sum(
        len(m.content.split()) for m in request.messages
    )


# --- the request as the generators see it ---------------------------------------------------------

_SYSTEM_BLOCK = re.compile(r"<SYSTEM>(.*?)</SYSTEM>\s*", re.DOTALL)
_PROMPT_LINE = re.compile(r"^\s*[A-Za-z_][\w-]*@[\w.-]+:\S*?\s?[$#]\s*$")
_PROMPT = re.compile(r"([A-Za-z_][\w-]*)@([A-Za-z0-9][\w.-]*):([^\s$#]*)[$#]")
_PROMPT_AT_START = re.compile(r"^\s*[A-Za-z_][\w-]*@[\w.-]+:\S*?[$#](?:\s|$)", re.MULTILINE)


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


def reply(request: ModelRequest, seed: str = "0") -> str:
    """The whole reply for one request: what `OfflineProvider.stream` yields, piece by piece."""
    view = _view(request, seed)
    role = _role(view)
    if role == "terminal":
        return _terminal(view)
    return _explore(view) if role == "explorer" else _converse(view)


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


# --- Markov prose ---------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"[.!?][\"')\]]*$")


class _Chain:
    """An order-2 word Markov chain; each corpus line is a paragraph, and chains stop at its end."""

    def __init__(self, text: str):
        self.next: dict[tuple[str, str], list[str]] = {}
        self.starts: list[tuple[str, str]] = []
        for line in text.splitlines():
            words = line.split()
            for i in range(len(words) - 1):
                pair = (words[i], words[i + 1])
                if (i == 0 or _SENTENCE_END.search(words[i - 1])) and words[i][:1].isupper():
                    self.starts.append(pair)
                if i + 2 < len(words):
                    self.next.setdefault(pair, []).append(words[i + 2])

    def sentence(self, rng: random.Random, max_words: int = 40) -> str:
        for _ in range(6):  # prefer a sentence that ends by itself within the limit
            words = self._walk(rng, max_words)
            if _SENTENCE_END.search(words[-1]):
                return " ".join(words)
        return " ".join(words).rstrip(",;:—-") + "."

    def _walk(self, rng: random.Random, max_words: int) -> list[str]:
        words = list(rng.choice(self.starts))
        seen = {(words[0], words[1])}
        while not _SENTENCE_END.search(words[-1]) and len(words) < max_words:
            # A pair already walked would send the sentence round the same loop again.
            options = [
                w for w in self.next.get((words[-2], words[-1]), ()) if (words[-1], w) not in seen
            ]
            if not options:
                break
            words.append(rng.choice(options))
            seen.add((words[-2], words[-1]))
        return words

    def prose(self, rng: random.Random, words: int) -> str:
        out: list[str] = []
        while sum(len(s.split()) for s in out) < words:
            out.append(self.sentence(rng, max(8, min(40, words))))
        return " ".join(out)


def _corpus(name: str) -> str:
    return resources.files(__package__).joinpath("offline_corpus", name).read_text("utf-8")


@cache
def _chain(*names: str) -> _Chain:
    return _Chain("\n".join(_corpus(f"{name}.txt") for name in names))


@cache
def _data() -> dict[str, Any]:
    return json.loads(_corpus("terminal.json"))


# --- explorer -------------------------------------------------------------------------------------

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


# Command words the explorer's messages are searched for (the terminal answers more than these).
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


# --- conversational partner -----------------------------------------------------------------------

_TOPICS = {
    "math": r"fraction|mathemat|theorem|conjecture|blackboard",
    "ethics": r"ethic|moral",
    "art": r"gallery|artist",
    "music": r"fugue|composer|counterpoint",
    "spirit": r"spiritual|mystic|sacred|contemplat",
}
_SIGN_LIKE = re.compile(r'like this: "([^"\n]{1,60}?:)"')
_SPEAKER = re.compile(r"^([A-Z][\w'-]*(?: [\w'()-]+){0,4}):\s")


def _converse(view: _View) -> str:
    rng, text = view.rng, view.everything.lower()
    topics = [name for name, pattern in _TOPICS.items() if re.search(pattern, text)]
    chain = _chain("dialogue", *topics, *topics)  # twice: the topic should lead
    low = min(50, view.cap)
    target = rng.randint(low, max(low, min(150, view.cap)))
    count = rng.randint(2, 3)
    paragraphs = [chain.prose(rng, max(1, target // count)) for _ in range(count)]
    if "art" in topics:
        art = rng.choice(sorted(_data()["art"].items()))[1]
        paragraphs.insert(1, f"Title: {rng.choice(_data()['titles'])}\n\n{art}")
    if _stops(view):
        paragraphs.append(STOP)
    elif room := _room_prompt(view):
        paragraphs.append(room)
    return _speaker(view) + "\n\n".join(paragraphs)


def _speaker(view: _View) -> str:
    """How this participant signs: as the system prompt shows, or as its own last reply did."""
    if m := _SIGN_LIKE.search(view.system):
        return m.group(1) + " "
    m = _SPEAKER.match(view.own[-1]) if view.own else None
    return m.group(1) + ": " if m else ""


def _room_prompt(view: _View) -> str:
    """The shell prompt a room's messages end with (seminar@ethics:~$), kept for continuity."""
    for text in (*view.own[-1:], view.last_user):
        lines = [line for line in text.splitlines() if line.strip()]
        if lines and _PROMPT_LINE.match(lines[-1]):
            return lines[-1].strip()
    return ""


# --- terminal -------------------------------------------------------------------------------------


def _terminal(view: _View) -> str:
    user, host = _identity(view)
    users = re.findall(r"as `([\w-]+)`", view.system)
    pending = _pending(view)
    if len(users) >= 2 and len(pending) >= 2:  # several sessions: each command after its prompt
        shown = []
        for name, text in zip(users, pending[-len(users) :], strict=False):
            machine = _Machine(view, name, host, _cwd(view, name))
            command = _command_line(text)
            shown.append(f"{machine.prompt()} {command}\n{machine.run(command)}".rstrip())
        return _fit("\n\n".join(shown), view.cap)
    machine = _Machine(view, user, host, _cwd(view, None))
    command = _command_line(view.last_user)
    output = machine.run(command) if command else machine.motd()  # nothing typed yet: a greeting
    prompt = machine.prompt()
    body = _fit(output, view.cap - len(prompt.split()))
    return f"{body}\n\n{prompt}" if body else prompt


def _identity(view: _View) -> tuple[str, str]:
    for text in (view.system, *reversed(view.own), *(m.content for m in view.messages)):
        if m := _PROMPT.search(text):
            return m.group(1), m.group(2)
    return "simulator", "backrooms"


def _cwd(view: _View, user: str | None) -> str:
    """Where this user was left: the path of its last prompt in this terminal's last reply."""
    for text in reversed(view.own[-1:]):
        paths = [m.group(3) for m in _PROMPT.finditer(text) if user in (None, m.group(1))]
        if paths and "<" not in paths[-1]:
            return paths[-1] or "~"
    return "~"


def _pending(view: _View) -> list[str]:
    """The user messages since this participant last spoke."""
    out: list[str] = []
    for m in reversed(view.messages):
        if m.role == "assistant":
            break
        out.append(m.content)
    return out[::-1]


def _fit(text: str, budget: int) -> str:
    lines = text.splitlines()
    if sum(len(line.split()) for line in lines) <= budget:
        return text
    while lines and sum(len(line.split()) for line in lines) > max(1, budget - 1):
        lines.pop()
    return "\n".join([*lines, "--More--"])


def _box(lines: list[str]) -> str:
    width = max(len(line) for line in lines) + 4
    edge = "+" + "-" * width + "+"
    return "\n".join([edge, *(f"|  {line.ljust(width - 4)}  |" for line in lines), edge])


def _wrap(text: str, width: int = 68) -> str:
    return textwrap.fill(text, width)


@dataclass
class _Entry:
    name: str
    is_dir: bool
    owner: str
    size: int
    stamp: str


_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


class _Machine:
    """One shell session on the imagined machine, for one reply."""

    def __init__(self, view: _View, user: str, host: str, cwd: str):
        self.view, self.rng, self.user, self.host, self.cwd = view, view.rng, user, host, cwd
        self.home = f"/home/{user}"

    def prompt(self) -> str:
        return f"{self.user}@{self.host}:{self.cwd}$"

    def run(self, line: str) -> str:
        outputs = []
        for part in re.split(r"&&|;", line):
            part = part.split("|")[0].strip()  # a pipeline shows what its first command prints
            if part and STOP not in part:
                outputs.append(self.one(part))
        return "\n".join(o for o in outputs if o)

    def one(self, part: str) -> str:
        try:
            words = shlex.split(part)
        except ValueError:
            words = part.split()
        if not words:
            return ""
        name, args = words[0], words[1:]
        if handler := _HANDLERS.get(name):
            return handler(self, args)
        if name.startswith("./") or name in _data()["programs"]:
            return self.program(name.removeprefix("./"))
        if self.rng.random() < 0.45:
            return f"bash: {name}: command not found"
        return self.program(name)

    # paths and the filesystem

    def abspath(self, arg: str | None = None) -> str:
        cwd = self.home + self.cwd[1:] if self.cwd.startswith("~") else self.cwd
        if not arg:
            return cwd
        if arg.startswith("~"):
            arg = self.home + arg[1:]
        return posixpath.normpath(posixpath.join(cwd, arg))

    def shown(self, path: str) -> str:
        inside = path == self.home or path.startswith(self.home + "/")
        return "~" + path[len(self.home) :] if inside else path

    def listing(self, path: str) -> list[_Entry]:
        rng, data = _rng(self.view.seed, "dir", path), _data()
        dirs = rng.sample(data["dirs"], rng.randint(2, 4))
        files = rng.sample(data["files"], rng.randint(3, 5))
        named = [(".", True), ("..", True), (".whisper", False)]
        named += sorted([(d, True) for d in dirs] + [(f, False) for f in files])
        return [self.entry(rng, name, is_dir) for name, is_dir in named]

    def entry(self, rng: random.Random, name: str, is_dir: bool) -> _Entry:
        day, hour, minute = rng.randint(1, 28), rng.randint(0, 23), rng.randint(0, 59)
        stamp = f"{rng.choice(_MONTHS)} {day:>2} {hour:02}:{minute:02}"
        owner = rng.choice(_data()["owners"])  # not the user's: sessions share one filesystem
        return _Entry(name, is_dir, owner, 4096 if is_dir else rng.randint(0, 48000), stamp)

    def visible(self, path: str) -> list[_Entry]:
        return [e for e in self.listing(path) if not e.name.startswith(".")]

    def lookup(self, arg: str) -> tuple[str, _Entry | None]:
        path = self.abspath(arg)
        parent, name = posixpath.split(path)
        return path, next((e for e in self.listing(parent) if e.name == name), None)

    # commands

    def ls(self, args: list[str]) -> str:
        flags = "".join(a[1:] for a in args if a.startswith("-"))
        targets = [a for a in args if not a.startswith("-")]
        path = self.abspath(targets[0] if targets else None)
        entries = self.listing(path) if "a" in flags else self.visible(path)
        if "l" not in flags:
            return _wrap("  ".join(e.name + "/" * e.is_dir for e in entries), 72)
        rows = [f"total {sum(e.size for e in entries) // 1024}"]
        for e in entries:
            runs = e.name.endswith((".sh", ".exe"))
            mode = "drwxr-xr-x" if e.is_dir else "-rwxr-xr-x" if runs else "-rw-r--r--"
            rows.append(
                f"{mode} {1 + e.is_dir} {e.owner:<9} {e.owner:<9} {e.size:>6} {e.stamp} {e.name}"
            )
        return "\n".join(rows)

    def cd(self, args: list[str]) -> str:
        target = args[0] if args else "~"
        path, entry = self.lookup(target)
        if entry is not None and not entry.is_dir:
            return f"bash: cd: {target}: Not a directory"
        self.cwd = self.shown(path)
        return self.motd() if self.rng.random() < 0.3 else ""

    def cat(self, args: list[str]) -> str:
        return "\n".join(self.read(a) for a in args[:2] if not a.startswith("-"))

    def read(self, arg: str) -> str:
        path, entry = self.lookup(arg)
        if entry is not None and entry.is_dir:
            return f"cat: {arg}: Is a directory"
        rng, ext = _rng(self.view.seed, "file", path), posixpath.splitext(path)[1]
        return _FILE_MAKERS.get(ext, _prose_file)(rng, posixpath.basename(path))

    def ps(self, args: list[str]) -> str:
        rng, data = self.rng, _data()
        rows = [f"{'USER':<10} {'PID':>5} %CPU %MEM STAT COMMAND"]
        pid = rng.randint(1, 9)
        for command in [*rng.sample(data["processes"], rng.randint(5, 8)), "-bash", "ps aux"]:
            owner = self.user if command in ("-bash", "ps aux") else rng.choice(data["owners"])
            stat = rng.choice(["S", "S", "R", "D", "Z", "S<"])
            rows.append(
                f"{owner:<10} {pid:>5} {rng.uniform(0, 9.9):4.1f} {rng.uniform(0, 4):4.1f} "
                f"{stat:<4} {command}"
            )
            pid += rng.randint(1, 400)
        return "\n".join(rows)

    def top(self, args: list[str]) -> str:
        load = ", ".join(f"{self.rng.uniform(0, 2):.2f}" for _ in range(3))
        uptime = f"up {self.rng.randint(400, 9999)} days, 1 user, load average: {load}"
        return f"{uptime}\n\n{self.ps(args)}"

    def find(self, args: list[str]) -> str:
        start = args[0] if args and not args[0].startswith("-") else "."
        root, rows = self.abspath(start), []
        for e in self.visible(root):
            rows.append(posixpath.join(start, e.name))
            if e.is_dir:
                kids = self.visible(posixpath.join(root, e.name))[:2]
                rows += [posixpath.join(start, e.name, k.name) for k in kids]
        return "\n".join(rows[:14])

    def tree(self, args: list[str]) -> str:
        targets = [a for a in args if not a.startswith("-")]
        root = self.abspath(targets[0] if targets else None)
        visible = self.visible(root)
        lines, counts = [targets[0] if targets else "."], [0, 0]
        for i, e in enumerate(visible):
            last = i == len(visible) - 1
            lines.append(("└── " if last else "├── ") + e.name + "/" * e.is_dir)
            counts[not e.is_dir] += 1
            if e.is_dir:
                kids = self.visible(posixpath.join(root, e.name))[:3]
                for j, k in enumerate(kids):
                    branch = "└── " if j == len(kids) - 1 else "├── "
                    lines.append(("    " if last else "│   ") + branch + k.name + "/" * k.is_dir)
                    counts[not k.is_dir] += 1
        return "\n".join(lines) + f"\n\n{counts[0]} directories, {counts[1]} files"

    def whoami(self, args: list[str]) -> str:
        return (
            self.user
            if self.rng.random() < 0.7
            else f"{self.user}\n(the machine also answers: {self.user}, again)"
        )

    def id(self, args: list[str]) -> str:
        return f"uid=1000({self.user}) gid=1000({self.user}) groups=1000({self.user}),404(hallway)"

    def pwd(self, args: list[str]) -> str:
        return self.abspath()

    def echo(self, args: list[str]) -> str:
        said = " ".join(args)
        if not said or self.rng.random() < 0.6:
            return said
        words = said.split()
        return "\n".join(
            "  " * i + " ".join(words[: len(words) - i]) for i in range(min(4, len(words)))
        )

    def uname(self, args: list[str]) -> str:
        return (
            f"Backrooms {self.host} 0.0.{self.rng.randint(1, 17)}-liminal #1 SMP x86_64 GNU/Linux"
        )

    def date(self, args: list[str]) -> str:
        rng = self.rng
        return (
            f"{rng.choice(['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'])} "
            f"{rng.choice(_MONTHS)} {rng.randint(1, 28)} 03:{rng.randint(0, 59):02}:"
            f"{rng.randint(0, 59):02} UTC {rng.choice([1970, 1999, 2038])}"
        )

    def man(self, args: list[str]) -> str:
        name = args[-1] if args else "man"
        chain, up = _chain("machine"), name.upper()
        return "\n".join(
            [
                f"{up}(1){'General Commands Manual'.center(40)}{up}(1)",
                "",
                "NAME",
                f"       {name} - {chain.sentence(self.rng, 12).rstrip('.').lower()}",
                "",
                "SYNOPSIS",
                f"       {name} [--depth N] [--quietly] [path]",
                "",
                "DESCRIPTION",
                textwrap.indent(_wrap(chain.prose(self.rng, 40), 64), "       "),
                "",
                "BUGS",
                f"       {chain.sentence(self.rng, 18)}",
            ]
        )

    def help(self, args: list[str]) -> str:
        names = " ".join(sorted(_HANDLERS))
        return f"{_wrap('available: ' + names, 72)}\nand a few that have not been named yet."

    def history(self, args: list[str]) -> str:
        commands = [
            c for m in self.view.messages if m.role == "user" if (c := _find_command(m.content))
        ]
        start = max(0, len(commands) - 10)
        return "\n".join(f"{i + 1:>5}  {c}" for i, c in enumerate(commands[start:], start))

    def sudo(self, args: list[str]) -> str:
        asked = f"[sudo] password for {self.user}:"
        if args and self.rng.random() < 0.5:
            return f"{asked}\n{self.one(shlex.join(args))}"
        return f"{asked}\nSorry. {_chain('machine').sentence(self.rng, 20)}"

    def exit(self, args: list[str]) -> str:
        return f"logout\n{_chain('machine').sentence(self.rng, 20)}"

    def clear(self, args: list[str]) -> str:
        return "\n" * 3

    def wall(self, args: list[str]) -> str:
        return f"Broadcast message from {self.user}@{self.host}:\n\n{' '.join(args)}"

    def write(self, args: list[str]) -> str:
        to, said = (args[0], " ".join(args[1:])) if args else ("nobody", "")
        return f"Message from {self.user}@{self.host} to {to}:\n{said}\nEOF"

    # generated scenes

    def motd(self) -> str:
        return _box(_wrap(_chain("machine").sentence(self.rng, 24), 52).splitlines())

    def program(self, name: str) -> str:
        rng, data, parts = self.rng, _data(), []
        if rng.random() < 0.5:
            banner = rng.choice([*data["banner_words"], name.upper()])
            parts.append(_box([" ".join(banner) if rng.random() < 0.5 else banner]))
        for label in rng.sample(
            ["loading rooms", "mapping doors", "warming cache", "listening"], 2
        ):
            done = rng.randint(3, 20)
            parts.append(f"{label:<14} [{'#' * done}{'.' * (20 - done)}] {done * 5:>3}%")
        parts.append(_wrap(_chain("machine").prose(self.rng, rng.randint(20, 45)), 72))
        if rng.random() < 0.35:
            parts.append(rng.choice(sorted(data["art"].items()))[1])
        return "\n\n".join(parts)


def _log_file(rng: random.Random, name: str) -> str:
    chain, tags, hour, minute = _chain("machine"), _data()["log_tags"], rng.randint(0, 3), 0
    day, lines = f"{rng.choice([1999, 2024, 2038])}-{rng.randint(1, 12):02}-14", []
    for _ in range(rng.randint(4, 6)):
        minute += rng.randint(1, 19)
        clock = f"{hour + minute // 60:02}:{minute % 60:02}:{rng.randint(0, 59):02}"
        stamp = f"[{day} {clock}]"
        lines.append(f"{stamp} {rng.choice(tags):<5} {chain.sentence(rng, 14)}")
    return "\n".join(lines)


def _script(rng: random.Random, name: str) -> str:
    return "\n".join(
        [
            "#!/bin/sh",
            f"# {_chain('machine').sentence(rng, 14)}",
            f"for door in $(ls ~/{rng.choice(_data()['dirs'])}); do",
            f'  knock "$door" && sleep {rng.randint(2, 17)}',
            "done",
            f'echo "{_chain("explorer").sentence(rng, 12)}"',
        ]
    )


def _config(rng: random.Random, name: str) -> str:
    keys = ["lights", "hum", "doors", "exit", "mood", "visitors", "depth", "remember", "wake"]
    values = ["on", "off", "flicker", "17", "always", "never", "unknown", "3", "warm", "true"]
    lines = [f"# {name}: {_chain('machine').sentence(rng, 12)}"]
    lines += [f"{k:<9}= {rng.choice(values)}" for k in rng.sample(keys, rng.randint(4, 7))]
    return "\n".join(lines)


def _hexdump(rng: random.Random, name: str) -> str:
    hidden = _chain("machine").sentence(rng, 12).encode("ascii", "replace")
    data = bytes(b if rng.random() < 0.7 else rng.randint(0, 255) for b in hidden)
    rows = []
    for offset in range(0, min(len(data), 80), 16):
        chunk = data[offset : offset + 16]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        rows.append(f"{offset:08x}  {chunk.hex(' '):<47}  |{text}|")
    return "\n".join(rows)


def _prose_file(rng: random.Random, name: str) -> str:
    text = _wrap(_chain("machine").prose(rng, rng.randint(35, 70)))
    if name.endswith(".md"):
        text = f"# {posixpath.splitext(name)[0].replace('_', ' ').title()}\n\n{text}"
    if rng.random() < 0.2:
        text = _box(_wrap(_chain("machine").sentence(rng, 20), 48).splitlines()) + "\n\n" + text
    if rng.random() < 0.2:
        text += "\n\n" + rng.choice(sorted(_data()["art"].items()))[1]
    return text


_ALIASES = {"dir": "ls", "less": "cat", "more": "cat", "head": "cat", "logout": "exit"}
_HANDLERS: dict[str, Callable[[_Machine, list[str]], str]] = {
    name: getattr(_Machine, _ALIASES.get(name, name))
    for name in [
        *_ALIASES,
        *"ls cd cat ps top tree whoami id pwd echo uname date man help".split(),
        *"history sudo exit clear wall write find".split(),
    ]
}

_FILE_MAKERS: dict[str, Callable[[random.Random, str], str]] = {
    ".log": _log_file,
    ".sh": _script,
    ".cfg": _config,
    ".db": _config,
    ".dat": _hexdump,
    ".bin": _hexdump,
    ".exe": _hexdump,
    ".wav": _hexdump,
}
