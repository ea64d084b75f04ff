"""How reply text is cut into prose and monospace for the page."""

from __future__ import annotations

from backrooms_engine.records import ParticipantInfo
from backrooms_engine.registry import load_registry
from bot.web.render import actor_classes, colour_class, colours_css, safe_colour, segments


def test_plain_prose_is_one_prose_segment() -> None:
    assert segments("Just talking.\n\nTwo paragraphs.") == [
        ("prose", "Just talking.\n\nTwo paragraphs.")
    ]


def test_terminal_output_and_art_are_monospace() -> None:
    text = "Let us look.\n\nuser@host:~$ ls -l\ntotal 4\n-rw-r--r-- 1 a a 12 notes.txt\n\nNice."
    assert segments(text) == [
        ("prose", "Let us look."),
        ("mono", "user@host:~$ ls -l\ntotal 4\n-rw-r--r-- 1 a a 12 notes.txt"),
        ("prose", "Nice."),
    ]
    art = "┌──────┐\n│ door │\n└──────┘"
    assert segments(art) == [("mono", art)]


def test_the_models_own_code_fences_become_code_blocks() -> None:
    text = "Try this:\n```bash\nls -la\n```\ndone"
    assert segments(text) == [("prose", "Try this:"), ("mono", "ls -la"), ("prose", "done")]
    assert segments("````\n```\nnested\n```\n````") == [("mono", "```\nnested\n```")]


def test_a_screen_that_ends_at_a_prompt_is_all_monospace() -> None:
    screen = "HALLWAY(1)    General Commands Manual    HALLWAY(1)\n\nNAME\n  hallway\n\nguest@offline:~$ "
    assert segments(screen) == [("mono", screen)]
    assert segments("is anyone here?\n\nguest@offline:~$") == [
        ("mono", "is anyone here?\n\nguest@offline:~$")
    ]


def test_every_line_but_the_fence_lines_survives() -> None:
    text = "a\n```\n```\nb\n|--|--|\n|  |  |\n```\nunclosed\n\n"
    kept = "\n".join(body for _, body in segments(text)).split("\n")
    assert [line for line in kept if line] == ["a", "b", "|--|--|", "|  |  |", "unclosed"]


def test_colours_are_checked_before_they_reach_the_stylesheet() -> None:
    assert safe_colour("#d97757") == "#d97757" and safe_colour("teal") == "teal"
    assert safe_colour("red; } body { display: none") == "#9e9e9e"
    css = colours_css(load_registry())
    assert f".{colour_class('opus')} {{ --actor: #d97757; }}" in css


def test_two_seats_of_one_model_get_colours_of_their_own() -> None:
    seats = [
        ParticipantInfo(0, "opus", "Claude 1", "claude-opus-5-5", "anthropic"),
        ParticipantInfo(1, "opus", "Claude 2", "claude-opus-5-5", "anthropic"),
    ]
    classes = actor_classes(seats, load_registry())
    assert classes["Claude 1"] != classes["Claude 2"]
    css = colours_css(load_registry())
    rules = dict(line.split(" { --actor: ") for line in css.splitlines())
    first, second = rules["." + classes["Claude 1"]], rules["." + classes["Claude 2"]]
    assert first == "#d97757; }" and second != first
