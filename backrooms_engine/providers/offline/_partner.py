"""The conversational partner: short paragraphs, now and then an ASCII piece."""

from __future__ import annotations

import re

from ._markov import _chain, _data
from ._view import _PROMPT_LINE, STOP, _stops, _View

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
