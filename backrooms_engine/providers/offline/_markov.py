"""Markov prose: order-2 word chains over the project's own corpus, built once per process."""

from __future__ import annotations

import json
import random
import re
from functools import cache
from importlib import resources
from typing import TypedDict

_SENTENCE_END = re.compile(r"[.!?][\"')\]]*$")


class TerminalData(TypedDict):
    """offline_corpus/terminal.json: the word lists the terminal and the explorer pick from."""

    dirs: list[str]
    files: list[str]
    owners: list[str]
    processes: list[str]
    log_tags: list[str]
    programs: list[str]
    explorer_commands: list[str]
    exo_commands: list[str]
    search_topics: list[str]
    banner_words: list[str]
    titles: list[str]
    art: dict[str, str]  # a name for each picture


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
def _data() -> TerminalData:
    # json.loads knows no shapes; the annotation states this file's, which the package ships.
    data: TerminalData = json.loads(_corpus("terminal.json"))
    return data
