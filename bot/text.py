"""Text shaping shared by every chat surface: message splitting, art fencing, mention defusing and
persona names. Pure functions; no chat library is imported here.

Fences follow CommonMark's rules for backtick fences (an opener is up to 3 spaces, 3 or more
backticks and an info string without backticks; a closer has at least as many backticks and nothing
else). Discord's and Slack's parsers are looser, but a text that is balanced by these rules renders
as intended on both. Tilde fences are plain text: neither platform renders them.

`split` closes a fence at every cut inside it and reopens it in the next part, except a fence of
more than limit // 8 backticks (250 for Discord), which no model writes: that one runs on unguarded
rather than eat the message with its own markers.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

# Discord answers 400 for message content over 2000 characters.
DISCORD_LIMIT = 2000
# Slack truncates text past 40,000 characters, but its docs recommend staying under 4,000, and
# longer messages may be shown split in two around that size, which breaks open code fences.
# 3,500 keeps a margin below that threshold.
SLACK_LIMIT = 3500
# Below this a reopened fence plus its closer would leave too little room for text.
MIN_LIMIT = 32
EMPTY = "(no text)"
ZWSP = "\u200b"

_OPENER = re.compile(r" {0,3}(`{3,})[^`]*")
_CLOSER = re.compile(r" {0,3}(`{3,})\s*")
_FENCE_START = re.compile(r" {0,3}(`{3,})")  # what every fence line starts with


def width(text: str) -> int:
    """UTF-16 code units. Discord and Slack say "characters" without naming the unit; this count is
    never below the code-point count, so a part that fits here fits either way."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


# ---------------------------------------------------------------------------------------------
# Fence state


@dataclass(frozen=True)
class _Block:
    opener: str  # the opening fence line as written
    ticks: int


def _step(block: _Block | None, line: str) -> _Block | None:
    """The open block after `line` (without its newline), given the open block before it."""
    if block is None:
        match = _OPENER.fullmatch(line)
        return _Block(line, len(match[1])) if match else None
    match = _CLOSER.fullmatch(line)
    return None if match and len(match[1]) >= block.ticks else block


def _role(block: _Block | None, line: str) -> tuple[str, int]:
    after = _step(block, line)
    if after is block:
        return ("text", 0)
    return ("close", 0) if after is None else ("open", after.ticks)


def _prose_flags(lines: list[str]) -> Iterator[bool]:
    """For each line: True when it is outside every code block and not a fence line itself."""
    block: _Block | None = None
    for line in lines:
        after = _step(block, line)
        yield block is None and after is None
        block = after


def _map_prose(text: str, fn: Callable[[str], str]) -> str:
    lines = text.split("\n")
    return "\n".join(
        fn(line) if prose else line for line, prose in zip(lines, _prose_flags(lines), strict=True)
    )


# ---------------------------------------------------------------------------------------------
# Splitting


@dataclass(frozen=True)
class Part:
    """One message. `body` is an exact slice of the input (the bodies concatenate back to it);
    `opening` (a reopened fence line and its newline) and `closing` (a newline if needed and a
    closing fence) are the only text the splitter adds."""

    body: str
    opening: str = ""
    closing: str = ""

    @property
    def text(self) -> str:
        return self.opening + self.body + self.closing


def split(text: str, limit: int, empty: str = EMPTY) -> list[str]:
    """Cut `text` into messages of at most `limit` characters (see `width`), at line boundaries."""
    return [part.text for part in split_parts(text, limit, empty)]


def split_parts(text: str, limit: int, empty: str = EMPTY) -> list[Part]:
    """`split`, keeping apart what came from the text and the fence lines added at cuts.
    Blank text gives one part holding the placeholder `empty`, as Discord rejects empty messages."""
    if limit < MIN_LIMIT:
        raise ValueError(f"limit must be at least {MIN_LIMIT}, got {limit}")
    if not empty.strip() or width(empty) > limit:
        raise ValueError("the placeholder must be non-blank and fit in one message")
    if not text.strip():
        return [Part(empty)]
    packer = _Packer(limit)
    lines = text.split("\n")
    for line in lines[:-1]:
        packer.feed(line + "\n")  # a part keeps the newline that ends its last line
    if lines[-1]:
        packer.feed(lines[-1])
    return packer.finish()


def _line_of(segment: str) -> str:
    return segment[:-1] if segment.endswith("\n") else segment


class _Packer:
    """Greedy packing of segments (whole lines, or pieces of a line too long for any message),
    tracking the fence state each part will render with."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[Part] = []
        self.block: _Block | None = None
        self.opening = ""
        self.segments: list[str] = []
        self.used = 0  # width of opening + segments
        self.opened_at = -1  # index of the segment that opened `block` in this part

    def guarded(self, block: _Block | None) -> _Block | None:
        """`block` if a cut inside it closes and reopens it. A fence with more backticks than an
        eighth of a message is no fence a model writes; it is left to run on."""
        return block if block is not None and block.ticks <= self.limit // 8 else None

    def reserve(self, block: _Block | None) -> int:
        # Room for "\n" + the closing fence, counted before the cut is known (every part <= limit).
        guarded = self.guarded(block)
        return 0 if guarded is None else 1 + guarded.ticks

    def reopen(self, block: _Block) -> str:
        return block.opener if width(block.opener) <= self.limit // 4 else "`" * block.ticks

    def fits(self, segment: str) -> bool:
        after = _step(self.block, _line_of(segment))
        return self.used + width(segment) + self.reserve(after) <= self.limit

    def append(self, segment: str) -> None:
        after = _step(self.block, _line_of(segment))
        if after is not None and after is not self.block:
            self.opened_at = len(self.segments)
        self.segments.append(segment)
        self.used += width(segment)
        self.block = after

    def emit(self, final: bool = False) -> None:
        body, fence = "".join(self.segments), self.guarded(self.block)
        closing = ""
        if fence is not None and not final:
            closing = ("" if body.endswith("\n") else "\n") + "`" * fence.ticks
        self.parts.append(Part(body, self.opening, closing))
        self.opening = "" if fence is None else self.reopen(fence) + "\n"
        self.segments, self.used, self.opened_at = [], width(self.opening), -1

    def starts_fresh(self, segment: str) -> bool:
        """A line that fits in a message starts a new one. A longer line is cut anyway, so it
        starts in this part unless less than a quarter of a message is left."""
        fence = self.guarded(self.block)
        opening = 0 if fence is None else width(self.reopen(fence)) + 1
        after = _step(self.block, _line_of(segment))
        fresh = opening + width(segment) + self.reserve(after)
        return fresh <= self.limit or self.used + self.reserve(after) > self.limit * 3 // 4

    def flush(self) -> None:
        """End the part before the next segment. A fence opened by the part's last line moves to
        the next part rather than ending this one as an empty block."""
        moved = None
        if self.block is not None and self.opened_at == len(self.segments) - 1 > 0:
            moved = self.segments.pop()
            self.used -= width(moved)
            self.block = None  # an opener only opens outside a block
        self.emit()
        if moved is not None:
            self.append(moved)

    def feed(self, segment: str) -> None:
        if self.segments and not self.fits(segment) and self.starts_fresh(segment):
            self.flush()
        while not self.fits(segment):  # only a line longer than a message is cut inside
            cut = self.cut_point(segment)
            if cut is None:
                self.flush()
                continue
            self.append(segment[:cut])
            self.emit()
            segment = segment[cut:]
        self.append(segment)

    def cut_point(self, segment: str) -> int | None:
        """Where to cut a segment that does not fit; None means "start a fresh part first".
        Only a line that starts with a run of more than limit // 8 backticks can lack a clean
        cut in a whole message; it is cut hard, reserving room for a fence the piece may open."""
        line = _line_of(segment)
        room = self.limit - self.used - self.reserve(_step(self.block, line))
        cut = _best_cut(line, room, self.block)
        if cut is not None or self.segments:
            return cut
        leading = _FENCE_START.match(line)
        opens = _Block(line, len(leading[1])) if leading and self.block is None else None
        worst = max(self.reserve(self.block), self.reserve(opens))
        return max(_widest(line, self.limit - self.used - worst), 1)

    def finish(self) -> list[Part]:
        self.emit(final=True)  # an input that leaves a fence open keeps it open
        return self.parts


def _widest(line: str, room: int) -> int:
    """The longest prefix length (in code points) whose width fits `room`."""
    used = 0
    for index, char in enumerate(line):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > room:
            return index
    return len(line)


def _best_cut(line: str, room: int, block: _Block | None) -> int | None:
    """Prefer a cut after whitespace in the last fifth of the room, then one that keeps a
    character and its combining marks together, then any clean cut."""
    top, floor = _widest(line, room), _widest(line, room * 4 // 5)

    def clean(p: int) -> bool:
        return _clean_cut(line, p, block)

    spaced = (p for p in range(top, floor, -1) if line[p - 1].isspace() and clean(p))
    whole = (p for p in range(top, 0, -1) if not _joins(line, p) and clean(p))
    rough = (p for p in range(top, 0, -1) if clean(p))
    return next(spaced, None) or next(whole, None) or next(rough, None)


def _clean_cut(line: str, p: int, block: _Block | None) -> bool:
    """A cut that splits no surrogate pair, starts no piece with a fence and keeps the fence role
    of the line's first piece (so each part parses as the whole text does)."""
    if "\ud800" <= line[p - 1] <= "\udbff" and "\udc00" <= line[p : p + 1] <= "\udfff":
        return False
    if _FENCE_START.match(line, p):
        return False
    return not _FENCE_START.match(line) or _role(block, line[:p]) == _role(block, line)


def _joins(line: str, p: int) -> bool:
    """True when line[p] belongs to the grapheme before it (combining mark, ZWJ, skin tone)."""
    char = line[p : p + 1]
    return bool(char) and (
        unicodedata.category(char).startswith("M")
        or "\u200d" in (char, line[p - 1])
        or "\U0001f3fb" <= char <= "\U0001f3ff"
    )


# ---------------------------------------------------------------------------------------------
# ASCII art and terminal output

_STRONG, _WEAK, _BLANK, _OTHER = "strong", "weak", "blank", "other"
_HEADER = re.compile(r"#{1,6}(\s|$)")
_LIST_ITEM = re.compile(r"\s*(?:[-*+]|\d{1,9}[.)])\s+(.*)")
_INDENTED = re.compile(r"(?: {2,}|\t)\S")
_URL = re.compile(r"https?://\S+")
_TERMINAL = re.compile(
    r"\$(\s|$)"  # a shell command
    r"|[\w.-]+@[\w.-]+:\S*[$#](\s|$)"  # user@host:~$
    r"|total \d+\s*$"  # the first line of `ls -l`
    r"|[-dlcbps][rwxsStT-]{9}[.+@]?\s+\d"  # drwxr-xr-x  2 ...
)


def _is_list_item(line: str) -> bool:
    match = _LIST_ITEM.fullmatch(line)
    return match is not None and any(char.isalnum() for char in match[1])


def _symbol_heavy(line: str) -> bool:
    """More than 40% punctuation or symbols among at least 4 of them; URLs do not count."""
    chars = [char for char in _URL.sub("", line) if not char.isspace()]
    symbols = sum(unicodedata.category(char)[0] in "PS" for char in chars)
    return symbols >= 4 and symbols > 0.4 * len(chars)


def _art_kind(line: str, in_list: bool) -> str:
    if _HEADER.match(line) or _is_list_item(line):
        return _OTHER
    if any("\u2500" <= char <= "\u259f" for char in line):  # box drawing and block elements
        return _STRONG
    if _TERMINAL.match(line.lstrip()) or _symbol_heavy(line):
        return _STRONG
    if _INDENTED.match(line) and not in_list:  # indented lines under a list item continue it
        return _STRONG
    return _WEAK if line.startswith(">") else _OTHER  # a quote is art only beside real art


def _kinds(lines: list[str]) -> list[str]:
    kinds, in_list = [], False
    for line, prose in zip(lines, _prose_flags(lines), strict=True):
        if not prose:
            kinds.append(_OTHER)
        elif not line.strip():
            kinds.append(_BLANK)
        else:
            in_list = _is_list_item(line) or (in_list and line[0] in " \t")
            kinds.append(_art_kind(line, in_list))
    return kinds


def _art_runs(lines: list[str]) -> Iterator[tuple[int, int]]:
    """(first, last) line indexes of each run worth fencing."""
    kinds, start = _kinds(lines), 0
    while start < len(lines):
        if kinds[start] not in (_STRONG, _WEAK):
            start += 1
            continue
        last = start
        for index in range(start + 1, len(lines)):
            if kinds[index] == _BLANK:
                continue
            if kinds[index] == _OTHER:
                break
            last = index
        run = kinds[start : last + 1]
        if len(run) - run.count(_BLANK) >= 2 and _STRONG in run:
            if not any("```" in line for line in lines[start : last + 1]):
                yield start, last
        start = last + 1


def fence_art(text: str) -> str:
    """Wrap runs of two or more art or terminal lines (blank lines may sit between them) in a
    plain ``` fence, so markdown cannot eat their spacing or symbols. Only adds fence lines."""
    lines = text.split("\n")
    out: list[str] = []
    done = 0
    for first, last in _art_runs(lines):
        out += [*lines[done:first], "```", *lines[first : last + 1], "```"]
        done = last + 1
    return "\n".join(out + lines[done:])


# ---------------------------------------------------------------------------------------------
# Mentions and escaping

_EVERYONE = re.compile(r"@(?=everyone|here)", re.IGNORECASE)
_TAG = re.compile(r"<(?=[@#/])")  # <@user> <@!user> <@&role> <#channel> </slash:command>


def discord_safe(text: str) -> str:
    """Stop Discord from rendering @everyone, @here and <@...>/<#...>/</...> mentions, outside
    code blocks (which render them raw anyway). Display only: what stops pings is sending with
    AllowedMentions.none()."""

    def defuse(line: str) -> str:
        return _TAG.sub("<" + ZWSP, _EVERYONE.sub("@" + ZWSP, line))

    return _map_prose(text, defuse)


def slack_escape(text: str) -> str:
    """Slack's documented escaping, and nothing more: it defuses <!channel>, <@U123> and links."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ---------------------------------------------------------------------------------------------
# Persona names

NAME_LIMIT = 80  # Discord webhook usernames are 1-80 characters; Slack gets the same cap
_FORBIDDEN = re.compile(r"discord|clyde", re.IGNORECASE)
_DIGIT_FOR = {"o": "0", "e": "3"}  # the fifth letter of each word: "Disc0rd", "Clyd3"


def _clean_name(actor: str) -> str:
    """Drop control and format (zero-width, bidi) characters and collapse whitespace, as Discord
    does to names before checking them."""
    kept = "".join(c for c in actor if c.isspace() or unicodedata.category(c) not in ("Cc", "Cf"))
    return " ".join(kept.split())


def persona_name(actor: str, *, platform: Literal["discord", "slack"]) -> str:
    """The username to post `actor`'s turns under: at most 80 characters, never empty."""
    if platform not in ("discord", "slack"):
        raise ValueError(f"unknown platform {platform!r}")
    name = _clean_name(actor)
    name = name[: _widest(name, NAME_LIMIT)].rstrip()
    if platform == "discord":
        # Discord refuses webhook names containing "discord" or "clyde" (case-insensitive).
        name = _FORBIDDEN.sub(lambda m: m[0][:4] + _DIGIT_FOR[m[0][4].lower()] + m[0][5:], name)
    return name or "Model"


# ---------------------------------------------------------------------------------------------
# Per platform


def prepare_for_discord(text: str, *, empty: str = EMPTY) -> list[str]:
    """A model's reply as the Discord messages to send, in order."""
    return _sendable(split(discord_safe(fence_art(text)), DISCORD_LIMIT, empty), empty)


def prepare_for_slack(text: str, *, empty: str = EMPTY) -> list[str]:
    """A model's reply as the Slack messages to send, in order."""
    # Escape after fencing: the art detector must see the raw "<", ">" and "&".
    return _sendable(split(slack_escape(fence_art(text)), SLACK_LIMIT, empty), empty)


def _sendable(parts: list[str], empty: str) -> list[str]:
    """Drop parts that are only whitespace (a cut inside a run of spaces): both platforms trim
    them to nothing and Discord rejects an empty message."""
    return [part for part in parts if part.strip()] or [empty]
