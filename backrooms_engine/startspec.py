"""The one parser of start requests, shared by every surface: "opus gpt4o cli 20".

Words are model aliases, optionally followed by a template name and a turn limit, in upstream's order.
The last word before the limit is the template when it names one whose participant count matches the
words before it; otherwise every word is a model and the default template applies. So `opus gpt4o cli`
is Opus and GPT-4o in the `cli` template, while `gpt4o cli` with template `cli_with_world_interface`
puts the world interface (model `cli`) second.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ConfigError, TemplateError
from .registry import Registry

USAGE = (
    "models in turn order, then optionally a template and a turn limit, e.g. `opus gpt4o cli 20`"
)


@dataclass(frozen=True)
class StartRequest:
    models: tuple[str, ...]
    template: str
    max_turns: int | None


def parse(
    text: str,
    *,
    registry: Registry,
    template_sizes: Mapping[str, int],
    template: str | None = None,
    max_turns: int | None = None,
    default_template: str = "cli",
) -> StartRequest:
    """`template_sizes` maps each available template to its participant count. An explicit
    `template` or `max_turns` (a surface's own options) wins over words in `text`."""
    words = text.replace(",", " ").split()
    if words and words[-1].isdigit() and words[-1] not in registry.models:
        limit = _turns(words.pop())
        max_turns = max_turns if max_turns is not None else limit
    if template is None and len(words) >= 2 and words[-1] in template_sizes:
        # `cli` is both a template and a model: it is the template when that reading fits, or
        # when reading it as a model would not fit the default template either.
        last = words[-1]
        fits_as_template = template_sizes[last] == len(words) - 1
        fits_as_model = last in registry.models and template_sizes.get(default_template) == len(
            words
        )
        if fits_as_template or not fits_as_model:
            template = words.pop()
    if not words:
        raise ConfigError(f"name at least one model: {USAGE}")
    template = template or default_template
    if template not in template_sizes:
        raise TemplateError(
            f"unknown template {template!r}; available: {', '.join(sorted(template_sizes))}"
        )
    registry.resolve(words)  # raises UnknownModelError naming the word and the known aliases
    size = template_sizes[template]
    if size != len(words):
        noun = "participant" if size == 1 else "participants"
        raise TemplateError(
            f"template {template!r} takes {size} {noun}, got {len(words)} ({' '.join(words)})"
        )
    if max_turns is not None and max_turns < 1:
        raise ConfigError(f"the turn limit must be at least 1, got {max_turns}")
    return StartRequest(tuple(words), template, max_turns)


def _turns(word: str) -> int:
    value = int(word)
    if value < 1:
        raise ConfigError(f"the turn limit must be at least 1, got {value}")
    return value
