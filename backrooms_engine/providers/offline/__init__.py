"""The offline model: replies made on this machine, with no key, no network and no download.

`OfflineProvider` lets a newcomer watch a conversation before setting up any API key. Each reply is
computed from the request alone:

* **Role.** `_view._role` reads the request to decide whom to play:
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
  (`offline_corpus/` beside this file), each built once per process. Listings, process tables, hex
  dumps, manual pages and art come from small generators. A directory's listing and a file's
  contents are seeded by their path, so a listing shown twice matches.
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
import re
from collections.abc import AsyncIterator, Mapping

from ...conversation import ModelRequest
from ...errors import ConfigError
from ...records import Usage
from ._explorer import _explore
from ._partner import _converse
from ._terminal import _terminal
from ._view import MAX_WORDS, MIN_REPLIES_TO_STOP, STOP, _role, _view

__all__ = ["MAX_WORDS", "MIN_REPLIES_TO_STOP", "STOP", "OfflineProvider", "reply"]

SEED_ENV = "BACKROOMS_SEED"
DELAY_ENV = "BACKROOMS_OFFLINE_DELAY"
DEFAULT_DELAY = 0.03


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


def reply(request: ModelRequest, seed: str = "0") -> str:
    """The whole reply for one request: what `OfflineProvider.stream` yields, piece by piece."""
    view = _view(request, seed)
    role = _role(view)
    if role == "terminal":
        return _terminal(view)
    return _explore(view) if role == "explorer" else _converse(view)
