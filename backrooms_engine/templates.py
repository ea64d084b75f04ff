"""Load, validate and render conversation templates.

A template is a JSONL file, one JSON object per line, one line per participant in turn order:
    {"system_prompt": str, "context": [{"role": "user"|"assistant", "content": str}, ...]}
or  {"cli": true} for the world-interface participant.
Placeholders {lmN_actor} and {lmN_company} (N from 1) are filled with str.format, as upstream does.
"""

from __future__ import annotations

import json
import stat
import string
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import TemplateError
from .suggest import did_you_mean

ROLES = ("user", "assistant")
SUFFIX = ".jsonl"


@dataclass(frozen=True)
class Message:
    role: str
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class TemplateLine:
    number: int  # line number in the file, for error messages
    system_prompt: str
    context: tuple[Message, ...]
    cli: bool = False


@dataclass(frozen=True)
class Template:
    name: str
    path: Path
    lines: tuple[TemplateLine, ...]

    @property
    def size(self) -> int:
        return len(self.lines)


@dataclass(frozen=True)
class Seat:
    """A participant's starting point after rendering: what its first request will carry."""

    system: str
    context: tuple[Message, ...]


def builtin_templates_dir() -> Path:
    """The project's own templates: inside the package when installed from a wheel, else the repo's."""
    here = Path(__file__).resolve().parent
    packaged = here / "templates"
    return packaged if packaged.is_dir() else here.parent / "templates"


def search_path(extra: Iterable[Path] = ()) -> list[Path]:
    """Directories searched in order: the ones given (e.g. --templates-dir), then the built-in ones."""
    return [*extra, builtin_templates_dir()]


def available(dirs: Sequence[Path]) -> dict[str, Path]:
    """Template name -> file; an earlier directory's template hides a later one of the same name."""
    found: dict[str, Path] = {}
    for directory in dirs:
        for path in _listing(directory):
            found.setdefault(path.name[: -len(SUFFIX)], path)
    return dict(sorted(found.items()))


def _listing(directory: Path) -> list[Path]:
    """The directory's template files, listed again only when the directory changed (a file
    added, removed or renamed changes its mtime): every run start asks, and a burst of them
    listed the same directory hundreds of times. A file's content is read anew each time."""
    try:
        info = directory.stat()
    except OSError:  # missing, or not a directory we can read
        return []
    mtime = info.st_mtime_ns
    cached = _listings.get(directory)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    paths = sorted(directory.glob(f"*{SUFFIX}")) if stat.S_ISDIR(info.st_mode) else []
    # A directory changed within the last second is listed again next time: its mtime has
    # coarse steps, so a second change just after this listing could leave it the same.
    if time.time_ns() - mtime > 1_000_000_000:
        _listings[directory] = (mtime, paths)
    return paths


_listings: dict[Path, tuple[int, list[Path]]] = {}


def sizes(dirs: Sequence[Path]) -> dict[str, int]:
    """Each loadable template's participant count (what start parsers need). A broken template
    is left out here; it is reported with its file and line where it is asked for by name."""
    found = {}
    for name, path in available(dirs).items():
        try:
            found[name] = load(path).size
        except TemplateError:
            continue
    return found


def find(name: str, dirs: Sequence[Path]) -> Template:
    paths = available(dirs)
    if name not in paths:
        known = ", ".join(paths) or "none (is the templates directory missing?)"
        raise TemplateError(
            f"unknown template {name!r}{did_you_mean(name, paths)}; available: {known}"
        )
    return load(paths[name])


def load(path: Path) -> Template:
    """Read and check a template. Parsed templates are kept while their file is unchanged: chat
    surfaces list every template's size at each autocomplete keystroke and each start."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise TemplateError(f"cannot read template {path}: {exc.strerror}") from None
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    cached = _loaded.get(key)
    if cached is None:
        cached = _loaded[key] = _parse(path)
    return cached


_loaded: dict[tuple[str, int, int], Template] = {}


def _parse(path: Path) -> Template:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"cannot read template {path}: {exc}") from None
    return parse(path.name[: -len(SUFFIX)], path, text)


def parse(name: str, origin: Path, text: str) -> Template:
    """A template from its JSONL text; `origin` names where the text came from in errors (a
    file, or a run's stored copy)."""
    lines = tuple(
        _parse_line(origin, number, raw)
        for number, raw in enumerate(text.splitlines(), start=1)
        if raw.strip()
    )
    if not lines:
        raise TemplateError(f"{origin}: the template has no participant lines")
    template = Template(name=name, path=origin, lines=lines)
    _check_placeholders(template)
    return template


def as_jsonl(template: Template) -> str:
    """The template as upstream's JSONL, placeholders unfilled: `parse` gives it back equal."""
    lines = [
        {"cli": True}
        if line.cli
        else {"system_prompt": line.system_prompt, "context": [m.as_dict() for m in line.context]}
        for line in template.lines
    ]
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)


def _parse_line(path: Path, number: int, raw: str) -> TemplateLine:
    where = f"{path}:{number}"
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise TemplateError(f"{where}: malformed JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise TemplateError(f"{where}: each line must be a JSON object, got {type(obj).__name__}")
    if obj.get("cli") is True:
        return TemplateLine(number=number, system_prompt="", context=(), cli=True)
    system = obj.get("system_prompt")
    context = obj.get("context")
    if not isinstance(system, str) or not isinstance(context, list):
        raise TemplateError(
            f'{where}: expected {{"system_prompt": "...", "context": [...]}} or {{"cli": true}}'
        )
    return TemplateLine(number, system, tuple(_message(where, i, m) for i, m in enumerate(context)))


def _message(where: str, index: int, raw: object) -> Message:
    if (
        not isinstance(raw, dict)
        or raw.get("role") not in ROLES
        or not isinstance(raw.get("content"), str)
    ):
        raise TemplateError(
            f'{where}: context message {index + 1} must be {{"role": "user" or "assistant", '
            f'"content": "..."}}'
        )
    return Message(raw["role"], raw["content"])


def placeholder_names(size: int) -> set[str]:
    return {f"lm{j}_{kind}" for j in range(1, size + 1) for kind in ("actor", "company")}


def _check_placeholders(template: Template) -> None:
    allowed = placeholder_names(template.size)
    for line in template.lines:
        for text in (line.system_prompt, *(m.content for m in line.context)):
            for field in _fields(template.path, line.number, text):
                if field not in allowed:
                    raise TemplateError(
                        f"{template.path}:{line.number}: unknown placeholder {{{field}}}; "
                        f"accepted: {', '.join('{' + a + '}' for a in sorted(allowed))} "
                        "(write {{ and }} for literal braces)"
                    )


def _fields(path: Path, number: int, text: str) -> list[str]:
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise TemplateError(
            f"{path}:{number}: {exc} (write {{{{ and }}}} for literal braces)"
        ) from None
    return [field for _, field, _, _ in parsed if field is not None]


def render(
    template: Template,
    actors: Sequence[str],
    companies: Sequence[str],
    inline_system: Sequence[bool],
) -> list[Seat]:
    """Fill placeholders and apply each participant's system-prompt handling, exactly as upstream.

    `inline_system[i]` moves a non-empty system prompt into the first user message as
    "<SYSTEM>{system}</SYSTEM>\\n\\n{content}", or appends "<SYSTEM>{system}</SYSTEM>" as a new user
    message when the context has none (upstream's handling of OpenAI models).
    """
    values = {f"lm{j + 1}_actor": a for j, a in enumerate(actors)}
    values.update({f"lm{j + 1}_company": c for j, c in enumerate(companies)})
    seats = []
    for line, inline in zip(template.lines, inline_system, strict=True):
        if line.cli:
            seats.append(Seat(system="", context=()))
            continue
        system = line.system_prompt.format(**values)
        context = [Message(m.role, m.content.format(**values)) for m in line.context]
        if inline and system:
            context = _inline(system, context)
            system = ""
        seats.append(Seat(system=system, context=tuple(context)))
    return seats


def _inline(system: str, context: list[Message]) -> list[Message]:
    for i, message in enumerate(context):
        if message.role == "user":
            context[i] = Message("user", f"<SYSTEM>{system}</SYSTEM>\n\n{message.content}")
            return context
    return [*context, Message("user", f"<SYSTEM>{system}</SYSTEM>")]
