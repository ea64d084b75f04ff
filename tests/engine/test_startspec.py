"""The one parser of start requests, as every chat surface uses it."""

from __future__ import annotations

import pytest

from backrooms_engine import startspec
from backrooms_engine.errors import ConfigError, TemplateError, UnknownModelError
from backrooms_engine.registry import load_registry

SIZES = {"cli": 2, "cli_with_world_interface": 2, "student": 2, "trio_cli": 3}


def parse(text, **kw):
    return startspec.parse(text, registry=load_registry(), template_sizes=SIZES, **kw)


@pytest.mark.parametrize(
    ("text", "models", "template", "turns"),
    [
        ("opus gpt4o cli", ("opus", "gpt4o"), "cli", None),
        ("opus gpt4o cli 20", ("opus", "gpt4o"), "cli", 20),
        ("opus gpt4o", ("opus", "gpt4o"), "cli", None),
        ("opus gpt4o 5", ("opus", "gpt4o"), "cli", 5),
        ("opus, gpt4o, student", ("opus", "gpt4o"), "student", None),
        ("opus gpt4o sonnet trio_cli 3", ("opus", "gpt4o", "sonnet"), "trio_cli", 3),
        ("gpt4o cli cli_with_world_interface", ("gpt4o", "cli"), "cli_with_world_interface", None),
        ("  opus   opus  ", ("opus", "opus"), "cli", None),
    ],
)
def test_upstream_word_order(text, models, template, turns):
    assert parse(text) == startspec.StartRequest(models, template, turns)


def test_explicit_options_win_over_words():
    got = parse("opus gpt4o", template="student", max_turns=7)
    assert got == startspec.StartRequest(("opus", "gpt4o"), "student", 7)


def test_cli_is_a_model_when_that_is_the_only_fitting_reading():
    assert parse("opus cli", template="cli_with_world_interface").models == ("opus", "cli")


@pytest.mark.parametrize(
    ("text", "error", "words"),
    [
        ("", ConfigError, "name at least one model"),
        ("cli", TemplateError, "takes 2 participants, got 1 (cli)"),
        ("opus gpt9", UnknownModelError, "unknown model 'gpt9'"),
        ("opus gpt4o sonnet cli", TemplateError, "takes 2 participants, got 3 (opus gpt4o sonnet)"),
        ("opus gpt4o 0", ConfigError, "at least 1"),
    ],
)
def test_bad_requests_say_what_is_accepted(text, error, words):
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        parse(text)


def test_unknown_explicit_template_lists_the_known_ones():
    with pytest.raises(TemplateError, match="unknown template 'nope'; available: cli"):
        parse("opus gpt4o", template="nope")
