"""Who takes part in a run and what each participant has seen so far."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .errors import TemplateError
from .registry import ModelSpec
from .templates import Message, Seat, Template, render

STOP_SEQUENCE = "^C^C"  # upstream's: a single ^C is often a fair command (after ping)


@dataclass(frozen=True)
class Participant:
    position: int  # 0-based turn order
    spec: ModelSpec
    actor: str  # "Claude 1", "GPT4o 2", or "CLI" for the world interface


@dataclass(frozen=True)
class SentBefore:
    """The seat's previous request, as far as prompt caching cares (providers/cache_marks.py)."""

    seconds_ago: float
    messages: int  # how many messages it carried: this request begins with the same ones


@dataclass(frozen=True)
class ModelRequest:
    """What one participant is sent for one reply."""

    spec: ModelSpec
    system: str | None
    messages: tuple[Message, ...]
    previous: SentBefore | None = None


def actor_name(spec: ModelSpec, position: int) -> str:
    """Upstream: "<display name> <i>" with i from 1; the world interface is just "CLI"."""
    return spec.display_name if spec.is_world_interface else f"{spec.display_name} {position + 1}"


def participants_for(specs: Sequence[ModelSpec]) -> list[Participant]:
    return [Participant(i, spec, actor_name(spec, i)) for i, spec in enumerate(specs)]


def check_fit(template: Template, specs: Sequence[ModelSpec]) -> None:
    """The number of template lines must equal the number of participants, and the world interface
    sits exactly where the template has a {"cli": true} line."""
    if template.size != len(specs):
        noun = "participant" if template.size == 1 else "participants"
        raise TemplateError(
            f"template {template.name!r} takes {template.size} {noun}, "
            f"got {len(specs)} ({' '.join(s.alias for s in specs)})"
        )
    for line, spec in zip(template.lines, specs, strict=True):
        if line.cli and not spec.is_world_interface:
            raise TemplateError(
                f"template {template.name!r} line {line.number} is the world interface: "
                f"put the `cli` model in position {template.lines.index(line) + 1}, not {spec.alias!r}"
            )
        if spec.is_world_interface and not line.cli:
            raise TemplateError(
                f"the world interface ({spec.alias!r}) can only take a template line that is "
                f'{{"cli": true}}; template {template.name!r} line {line.number} is a model prompt '
                "(try --template cli_with_world_interface)"
            )


class Conversation:
    """Per-participant contexts, built from a template and grown one reply at a time."""

    def __init__(
        self,
        template: Template,
        participants: Sequence[Participant],
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        specs = [p.spec for p in participants]
        check_fit(template, specs)
        self.template = template
        self.participants = tuple(participants)
        seats = render(
            template,
            actors=[p.actor for p in participants],
            companies=[s.company for s in specs],
            inline_system=[s.system_prompt == "inline" for s in specs],
        )
        self._seats: tuple[Seat, ...] = tuple(seats)
        self._contexts: list[list[Message]] = [list(seat.context) for seat in seats]
        self._clock = clock
        self._sent: dict[int, tuple[float, int]] = {}  # position -> (clock, messages) last asked

    @classmethod
    def rebuild(
        cls,
        template: Template,
        participants: Sequence[Participant],
        replies: Iterable[tuple[int, str]],
    ) -> Conversation:
        """Contexts as they stood after the stored replies, given as (author position, text).

        A reply containing ^C^C was never added to any context (upstream), so it is skipped here
        too: a run extended after a ^C^C goes on as if that reply had not reached the others.
        """
        conversation = cls(template, participants)
        for position, text in replies:
            if STOP_SEQUENCE not in text:
                conversation.append(position, text)
        return conversation

    def append(self, author: int, text: str) -> None:
        """Upstream: the reply is the author's `assistant` message and everyone else's `user` one."""
        for position, context in enumerate(self._contexts):
            context.append(Message("assistant" if position == author else "user", text))

    def request(self, position: int) -> ModelRequest:
        """The seat's next request; asking for it counts as sending it (for prompt caching)."""
        seat = self._seats[position]
        messages = tuple(self._contexts[position])
        at = self._clock()
        before = self._sent.get(position)
        self._sent[position] = (at, len(messages))
        return ModelRequest(
            spec=self.participants[position].spec,
            system=seat.system or None,
            messages=messages,
            previous=None if before is None else SentBefore(at - before[0], before[1]),
        )
