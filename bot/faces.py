"""A face for every persona, with no configuration: a picture and a colour by company, with a
variant for each further seat of the same company, so no two seats of a run look alike.

The pictures are drawn here, by code (a 64x64 PNG: a disc in the face's colour, the company's
shape in white, and one dot per variant), and served by the web viewer at /faces/NAME.png. With
BACKROOMS_PUBLIC_URL set, chat posts point at them; without it, Discord gets one of its own
default avatars (a different one per seat) and Slack an emoji per company. A model's own
`avatar_url` in the registry always wins.
"""

from __future__ import annotations

import functools
import math
import re
import struct
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from backrooms_engine.errors import UnknownModelError
from backrooms_engine.records import ParticipantInfo
from backrooms_engine.registry import Registry

COMPANIES = ("anthropic", "openai", "google", "deepseek", "local", "other")
_BASE = {
    "anthropic": (217, 119, 87),
    "openai": (16, 163, 127),
    "google": (66, 133, 244),
    "deepseek": (123, 92, 255),
    "local": (201, 162, 39),
    "other": (138, 143, 152),
}
_SHADES = (0.0, 0.4, -0.35, 0.65, -0.55)  # towards white (+) or black (-), one per variant
_EMOJI = {
    "anthropic": ("large_orange_circle", "large_orange_square", "large_orange_diamond"),
    "openai": ("large_green_circle", "large_green_square", "green_heart"),
    "google": ("large_blue_circle", "large_blue_square", "large_blue_diamond"),
    "deepseek": ("large_purple_circle", "large_purple_square", "purple_heart"),
    "local": ("large_yellow_circle", "large_yellow_square", "yellow_heart"),
    "other": ("white_circle", "white_large_square", "white_heart"),
}
_LOCAL_PROVIDERS = ("ollama", "vllm", "local", "llamacpp", "lmstudio")
_NAME = re.compile(r"(?P<company>[a-z]+)-(?P<variant>\d{1,2})")
SIZE = 64
DISCORD_DEFAULTS = 6  # https://cdn.discordapp.com/embed/avatars/0.png .. 5.png


@dataclass(frozen=True)
class Face:
    company: str
    variant: int  # 0 for the first seat of its company in a run, 1 for the second, ...

    @property
    def name(self) -> str:
        return f"{self.company}-{self.variant}"

    @property
    def colour(self) -> str:
        return "#{:02x}{:02x}{:02x}".format(*_shade(_BASE[self.company], self.variant))

    def emoji(self) -> str:
        options = _EMOJI[self.company]
        return f":{options[self.variant % len(options)]}:"

    def url(self, public_url: str) -> str:
        return f"{public_url.rstrip('/')}/faces/{self.name}.png"


def company_of(company: str, provider: str) -> str:
    """One of COMPANIES for a model's registry company and provider name."""
    words = f"{company} {provider}".lower()
    if any(p in provider.lower() for p in _LOCAL_PROVIDERS):
        return "local"
    for known, hints in (
        ("anthropic", ("anthropic", "claude")),
        ("openai", ("openai", "gpt")),
        ("google", ("google", "gemini", "gemma")),
        ("deepseek", ("deepseek",)),
    ):
        if any(h in words for h in hints):
            return known
    return "other"


def seat_sources(
    registry: Registry, participants: Iterable[ParticipantInfo]
) -> tuple[list[str], list[str | None]]:
    """Each seat's company and its model's own avatar_url (None when unset), from the registry;
    a seat whose alias has since left the registry keeps its stored provider's company."""
    companies: list[str] = []
    own: list[str | None] = []
    for p in participants:
        try:
            spec = registry.get(p.alias)
        except UnknownModelError:
            companies.append(company_of("", p.provider))
            own.append(None)
            continue
        companies.append(company_of(spec.company, spec.provider.name))
        own.append(spec.avatar_url or None)
    return companies, own


def seat_faces(companies: Sequence[str]) -> list[Face]:
    """A face per seat, in seat order: a further seat of a company gets the next variant."""
    seen: dict[str, int] = {}
    faces = []
    for company in companies:
        variant = seen.get(company, 0)
        seen[company] = variant + 1
        faces.append(Face(company, variant))
    return faces


def discord_default_avatar(position: int) -> str:
    """Discord's own default avatar for a seat: a different one for each of the first six."""
    return f"https://cdn.discordapp.com/embed/avatars/{position % DISCORD_DEFAULTS}.png"


def distinct_colours(colours: Sequence[str]) -> list[str]:
    """The given colours, with each repeat shaded until it differs from every earlier one (two
    seats of one alias share the registry's colour otherwise)."""
    out: list[str] = []
    for colour in colours:
        rgb = _rgb(colour)
        variant, shaded = 0, colour
        # Bounded: a grey has no channels to turn, so its shades run out after one round.
        while shaded.lower() in (c.lower() for c in out) and variant < 3 * len(_SHADES):
            variant += 1
            shaded = "#{:02x}{:02x}{:02x}".format(*_shade(rgb, variant))
        out.append(shaded)
    return out


def face_by_name(name: str) -> Face | None:
    """The face a /faces/NAME.png asks for, or None for a name we never hand out."""
    match = _NAME.fullmatch(name)
    if match is None or match["company"] not in COMPANIES:
        return None
    return Face(match["company"], int(match["variant"]))


# -- colours ---------------------------------------------------------------------------------


def _rgb(colour: str) -> tuple[int, int, int]:
    raw = colour.lstrip("#")
    try:
        return (int(raw[0:2], 16), int(raw[2:4], 16), int(raw[4:6], 16))
    except (ValueError, IndexError):
        return _BASE["other"]


def _shade(rgb: tuple[int, int, int], variant: int) -> tuple[int, int, int]:
    amount = _SHADES[variant % len(_SHADES)]
    for _ in range(variant // len(_SHADES)):  # past the shades, the channels turn each round
        rgb = (rgb[1], rgb[2], rgb[0])
    target = 255 if amount > 0 else 0
    r, g, b = (round(c + (target - c) * abs(amount)) for c in rgb)
    return r, g, b


# -- pictures ----------------------------------------------------------------------------------


def _shape(company: str) -> Callable[[float, float], bool]:
    """The company's mark, on coordinates from -1 to 1 around the centre."""
    marks: dict[str, Callable[[float, float], bool]] = {
        "anthropic": lambda x, y: (
            min(abs(x), abs(y), abs(x - y) / 1.4, abs(x + y) / 1.4) < 0.09
            and math.hypot(x, y) < 0.55
        ),  # an asterisk
        "openai": lambda x, y: 0.32 < max(abs(x) * 0.87 + abs(y) * 0.5, abs(y)) < 0.5,  # a hexagon
        "google": lambda x, y: any(
            math.hypot(x - dx, y - dy) < 0.17
            for dx, dy in ((-0.25, -0.25), (0.25, -0.25), (-0.25, 0.25), (0.25, 0.25))
        ),  # four dots
        "deepseek": lambda x, y: abs(x) + abs(y) < 0.5,  # a diamond
        "local": lambda x, y: max(abs(x), abs(y)) < 0.38,  # a square
        "other": lambda x, y: 0.3 < math.hypot(x, y) < 0.45,  # a ring
    }
    return marks[company]


def _pixel(face: Face, shape: Callable[[float, float], bool], px: int, py: int) -> bytes:
    x, y = (px + 0.5) / SIZE * 2 - 1, (py + 0.5) / SIZE * 2 - 1
    if math.hypot(x, y) > 0.98:
        return b"\0\0\0\0"  # transparent outside the disc
    dots = [(-0.2 + 0.2 * i, 0.74) for i in range(min(face.variant, 3))]
    if shape(x, y) or any(math.hypot(x - dx, y - dy) < 0.08 for dx, dy in dots):
        return b"\xff\xff\xff\xff"
    return bytes(_shade(_BASE[face.company], face.variant)) + b"\xff"


@functools.lru_cache(maxsize=64)
def png(face: Face) -> bytes:
    """The face as a 64x64 RGBA PNG (drawn here; nothing is read from disk)."""
    shape = _shape(face.company)
    rows = b"".join(
        b"\0" + b"".join(_pixel(face, shape, px, py) for px in range(SIZE)) for py in range(SIZE)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", SIZE, SIZE, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )
