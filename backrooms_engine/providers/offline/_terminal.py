"""The terminal: output for the command typed, then a prompt."""

from __future__ import annotations

import posixpath
import random
import re
import shlex
import textwrap
from collections.abc import Callable
from dataclasses import dataclass

from ._markov import _chain, _data
from ._view import _PROMPT, STOP, _command_line, _find_command, _pending, _rng, _View


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
