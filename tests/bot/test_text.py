"""Message shaping shared by the chat surfaces: splitting, art fencing, mention defusing, names.

"Added" text, precisely: `split_parts` returns `Part(body, opening, closing)` per message, where
the bodies are slices of the input that concatenate back to it exactly, `opening` is "" or one
fence line plus "\\n", and `closing` is "" or an optional "\\n" plus one closing fence line. The
message sent is `opening + body + closing`. `fence_art` adds nothing but lines that are exactly ```.
The fence rules below are written again here, independently of bot/text.py.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.text import (
    DISCORD_LIMIT,
    SLACK_LIMIT,
    ZWSP,
    Part,
    discord_safe,
    fence_art,
    persona_name,
    prepare_for_discord,
    prepare_for_slack,
    slack_escape,
    split,
    split_parts,
    width,
)

# --- an independent reading of CommonMark backtick fences ------------------------------------


def open_ticks_after(text: str) -> int:
    """Backticks of the fence still open at the end of `text`, 0 if none."""
    ticks = 0
    for line in text.split("\n"):
        indent = len(line) - len(line.lstrip(" "))
        rest = line[indent:]
        run = len(rest) - len(rest.lstrip("`"))
        if indent > 3 or run < 3:
            continue
        info = rest[run:]
        if ticks == 0 and "`" not in info:
            ticks = run
        elif ticks and run >= ticks and not info.strip():
            ticks = 0
    return ticks


def is_opener(line: str) -> bool:
    return open_ticks_after(line) > 0


def unsplit(parts: list[Part]) -> str:
    return "".join(part.body for part in parts)


def longest_leading_ticks(text: str) -> int:
    runs = (re.match(r" {0,3}(`*)", line) for line in text.split("\n"))
    return max(len(run[1]) for run in runs if run)


def check_parts(text: str, limit: int) -> list[Part]:
    """Every part fits and the bodies give back the input. When no line opens with more than
    limit // 8 backticks (a fence that long is left unguarded by design), no part but the last
    leaves a block open, and the last one only if the input does."""
    parts = split_parts(text, limit)
    assert split(text, limit) == [part.text for part in parts]
    for part in parts:
        assert part.text == part.opening + part.body + part.closing
        assert len(part.text) <= limit and width(part.text) <= limit
        assert part.opening == "" or (part.opening.endswith("\n") and is_opener(part.opening[:-1]))
        assert re.fullmatch(r"(\n?`{3,})?", part.closing)
    if text.strip():
        assert unsplit(parts) == text
    else:
        assert parts == [Part("(no text)")]
    if longest_leading_ticks(text) > limit // 8:
        return parts
    for part in parts[:-1]:
        assert open_ticks_after(part.text) == 0, "a part leaves a code block open"
    assert bool(open_ticks_after(parts[-1].text)) == bool(open_ticks_after(text))
    return parts


# --- split: examples --------------------------------------------------------------------------


def test_a_5000_character_reply_splits_in_three_parts_at_line_boundaries():
    text = "\n".join(f"{i:03d} " + "x" * 45 for i in range(100))  # 100 lines of 49 characters

    parts = check_parts(text, DISCORD_LIMIT)

    assert len(text) == 4999 and len(parts) == 3
    assert all(part.body.endswith("\n") for part in parts[:-1])
    assert [part.body.count("\n") for part in parts] == [40, 40, 19]


def test_a_fence_crossing_the_cut_is_closed_and_reopened_with_its_language_tag():
    code = "\n".join(f"print({i})  # line {i}" for i in range(200))
    text = f"Here is the script:\n```python\n{code}\n```\nThat is all."

    parts = check_parts(text, DISCORD_LIMIT)

    assert len(parts) == 3
    assert parts[0].text.endswith("\n```") and parts[0].closing == "```"
    assert parts[1].opening == "```python\n" and parts[1].closing == "```"
    assert parts[2].text.startswith("```python\nprint(")
    assert parts[2].text.endswith("```\nThat is all.")


def test_a_four_backtick_fence_is_reopened_and_closed_with_four():
    inner = "\n".join(["```", *(f"line {i}" for i in range(30)), "```"])
    text = f"````markdown\n{inner}\n````"

    parts = check_parts(text, 120)

    assert len(parts) > 2
    assert all(part.opening == "````markdown\n" for part in parts[1:])
    assert all(part.closing.endswith("````") for part in parts[:-1])


def test_an_opening_fence_at_the_end_of_a_part_moves_to_the_next_part():
    text = "a" * 1990 + "\n```js\nlet x = 1;\n```"

    parts = check_parts(text, DISCORD_LIMIT)

    assert parts[0].text == "a" * 1990 + "\n"
    assert parts[1].text == "```js\nlet x = 1;\n```"


def test_a_single_4500_character_line_is_cut_inside_at_whitespace():
    words = " ".join(f"word{i:04d}" for i in range(500))  # 4499 characters, one line

    parts = check_parts(words, DISCORD_LIMIT)

    assert len(parts) == 3
    assert all(part.body.endswith(" ") for part in parts[:-1])
    assert all(len(part.text) > 0.8 * DISCORD_LIMIT for part in parts[:-1])


def test_a_line_without_whitespace_is_cut_hard_at_the_limit():
    parts = check_parts("y" * 4500, DISCORD_LIMIT)

    assert [len(part.text) for part in parts] == [2000, 2000, 500]


def test_a_long_line_inside_a_fence_is_cut_between_a_reopen_and_a_close():
    text = "```\n" + "z" * 4500 + "\n```"

    parts = check_parts(text, DISCORD_LIMIT)

    assert len(parts) == 3
    assert parts[0].text.startswith("```\nzzz") and parts[0].text.endswith("zzz\n```")
    assert parts[1].text.startswith("```\nzzz") and parts[1].text.endswith("zzz\n```")


def test_astral_characters_count_twice_and_are_never_split():
    parts = check_parts("😀" * 1500, DISCORD_LIMIT)  # 1500 code points, 3000 UTF-16 units

    assert [part.text for part in parts] == ["😀" * 1000, "😀" * 500]


def test_a_cut_keeps_a_letter_with_its_combining_accent():
    parts = check_parts("e\u0301" * 1500, DISCORD_LIMIT)

    assert len(parts) == 2
    assert not parts[1].text.startswith("\u0301")


def test_a_piece_of_a_cut_line_never_starts_with_a_fence():
    line = "x" * 1999 + "```not a fence" + "y" * 100

    parts = check_parts(line, DISCORD_LIMIT)

    assert not any(part.text.startswith("```") for part in parts)


@pytest.mark.parametrize("text", ["", " ", "\n\n", " \t \n "])
def test_empty_or_whitespace_text_gives_the_placeholder(text):
    assert split(text, DISCORD_LIMIT) == ["(no text)"]
    assert split(text, DISCORD_LIMIT, empty="…") == ["…"]


def test_a_limit_too_small_for_fences_or_an_unfit_placeholder_is_refused():
    with pytest.raises(ValueError):
        split("hello", 10)
    with pytest.raises(ValueError):
        split("", 40, empty="x" * 41)


# --- split: properties ------------------------------------------------------------------------

PROSE = st.text(alphabet="abcdefgh ijklm,.'?!", min_size=1, max_size=50)
ART = st.sampled_from(
    [
        "┌──────────┐",
        "│ BACKROOMS │",
        "└──────────┘",
        "░▒▓█▓▒░",
        "  /\\_/\\",
        " ( o.o )",
        "  > ^ <",
        "drwxr-xr-x  2 ada ada 4096 Mar  3 10:00 .",
        "total 24",
        "$ ls -la",
        "ada@backrooms:~$ cat void.txt",
        "> heredoc line",
        "*  *  *  *",
        "|_| |_|\\___|",
    ]
) | st.text(alphabet="─│┌┐└┘░▓*#/\\|_-=+ ", min_size=2, max_size=40)
# Long lines repeat a short unit: hypothesis draws every character, and 700 draws are slow.
LONG = st.builds(
    lambda unit, times: unit * times,
    st.text(alphabet="ab `é\u0301😀\u200d─", min_size=4, max_size=30),
    st.integers(5, 40),
)
ODD = st.sampled_from(
    ["``` not`an opener", "~~~", "  ```js", "    ```", "````", "``", "- item", "# title", ""]
)


@st.composite
def fenced_blocks(draw: st.DrawFn) -> str:
    ticks = draw(st.integers(3, 5))
    tag = draw(st.sampled_from(["", "python", "js", "c++", " sh"]))
    inner = [PROSE, ART, LONG, st.just(""), st.just("    indented()")]
    if ticks > 3:
        inner.append(st.just("```"))  # a ``` inside a ```` block is content
    body = draw(st.lists(st.one_of(inner), max_size=6))
    close = [] if draw(st.integers(0, 9)) == 0 else ["`" * draw(st.integers(ticks, ticks + 1))]
    return "\n".join(["`" * ticks + tag, *body, *close])


CHUNKS = st.one_of(PROSE, ART, LONG, ODD, fenced_blocks(), st.just(""))
TEXTS = st.builds(
    lambda chunks, trailing: "\n".join(chunks) + trailing,
    st.lists(CHUNKS, max_size=10),
    st.sampled_from(["", "\n"]),
)


@settings(max_examples=200, deadline=None)
@given(text=TEXTS, limit=st.integers(40, 400) | st.just(DISCORD_LIMIT), copies=st.integers(1, 6))
def test_split_keeps_every_part_within_the_limit_and_loses_nothing(text, limit, copies):
    check_parts(text * copies, limit)


@settings(max_examples=200, deadline=None)
@given(text=st.text(), limit=st.integers(32, 80))
def test_split_keeps_any_text_within_the_limit_and_loses_nothing(text, limit):
    check_parts(text, limit)


# --- fence_art --------------------------------------------------------------------------------


def added_fences(before: str, after: str) -> int:
    """How many ``` lines `after` adds to `before`; fails if anything else changed."""
    original, index, added = before.split("\n"), 0, 0
    for line in after.split("\n"):
        if index < len(original) and line == original[index]:
            index += 1
        else:
            assert line == "```", f"changed line: {line!r}"
            added += 1
    assert index == len(original)
    return added


LS = """\
$ ls -la
total 24
drwxr-xr-x  3 ada ada 4096 Mar  3 10:00 .
drwxr-xr-x 18 ada ada 4096 Mar  3 09:58 ..
-rw-r--r--  1 ada ada  220 Mar  3 10:00 .bash_logout"""

BOX = """\
╔══════════════════╗
║  THE BACKROOMS   ║
╚══════════════════╝"""

FIGLET = r"""
 _   _      _ _
| | | | ___| | | ___
| |_| |/ _ \ | |/ _ \
|  _  |  __/ | | (_) |
|_| |_|\___|_|_|\___/""".strip("\n")


@pytest.mark.parametrize("art", [LS, BOX, FIGLET], ids=["ls", "box", "figlet"])
def test_art_between_prose_is_fenced(art):
    text = f"Look at this:\n{art}\nWhat do you think?"

    assert fence_art(text) == f"Look at this:\n```\n{art}\n```\nWhat do you think?"


def test_indented_code_is_fenced_but_prose_and_lists_are_not():
    code = "    def f(x):\n        return x + 1"
    prose = "The corridor hums.\nIts carpet is damp, and the lights flicker in a slow rhythm."
    bullets = "- first thing\n- second thing\n1. numbered\n2. again\n# A header\n## Another"

    assert fence_art(code) == f"```\n{code}\n```"
    assert fence_art(prose) == prose
    assert fence_art(bullets) == bullets


def test_indented_lines_continuing_a_list_item_are_not_art():
    text = (
        "1. Walk north\n   until the hum changes\n   then stop\n- next\n  more detail\n  and more"
    )

    assert fence_art(text) == text


def test_a_single_art_line_stays_as_it_is():
    text = "Here:\n┌──┐\nthat was a box"

    assert fence_art(text) == text


def test_blank_lines_inside_a_run_stay_in_the_fence_but_never_start_or_end_it():
    text = "intro\n\n┌──┐\n\n└──┘\n\noutro"

    assert fence_art(text) == "intro\n\n```\n┌──┐\n\n└──┘\n```\n\noutro"


def test_quote_lines_alone_are_a_quote_but_beside_a_prompt_are_terminal_output():
    quote = "> you said the walls\n> were breathing"
    shell = "$ cat <<EOF\n> hello\n> EOF"

    assert fence_art(quote) == quote
    assert fence_art(shell) == f"```\n{shell}\n```"


def test_shell_prompts_are_terminal_output():
    text = "ada@backrooms:~$ whoami\nada@backrooms:~$ pwd"

    assert fence_art(text) == f"```\n{text}\n```"


def test_art_containing_triple_backticks_is_left_alone():
    text = "  echo ```\n  ┌──┐"

    assert fence_art(text) == text


def test_lines_inside_existing_fences_are_untouched():
    text = "```\n┌──┐\n└──┘\n```\n````\n```\n  indented\n  more\n````"

    assert fence_art(text) == text


def test_links_and_ordinary_punctuation_are_not_art():
    text = "See https://example.com/a/b?c=d&e=f.\nAnd https://example.org/x-y_z/(1)."

    assert fence_art(text) == text


ART_TEXTS = st.builds(
    "\n".join,
    st.lists(
        st.one_of(PROSE, ART, ODD, fenced_blocks(), st.just(""), st.just("  > quoted")),
        max_size=14,
    ),
)


@settings(max_examples=200, deadline=None)
@given(text=ART_TEXTS)
def test_fence_art_only_adds_balanced_fence_lines(text):
    fenced = fence_art(text)

    assert added_fences(text, fenced) % 2 == 0
    assert bool(open_ticks_after(fenced)) == bool(open_ticks_after(text))
    assert fence_art(fenced) == fenced


# --- mentions and escaping --------------------------------------------------------------------


def test_discord_safe_defuses_mass_mentions_and_mention_tags():
    text = "@everyone @here <@123> <@!123> <@&456> <#789> </backrooms start:42>"

    safe = discord_safe(text)

    assert safe == (
        f"@{ZWSP}everyone @{ZWSP}here <{ZWSP}@123> <{ZWSP}@!123> <{ZWSP}@&456> "
        f"<{ZWSP}#789> <{ZWSP}/backrooms start:42>"
    )
    assert safe.replace(ZWSP, "") == text
    assert discord_safe(safe) == safe


def test_discord_safe_leaves_code_blocks_and_plain_text_alone():
    text = "```html\n<div></div> @everyone\n```\nmail me at ada@example.com <3"

    assert discord_safe(text) == text


def test_slack_escape_defuses_broadcasts_user_mentions_and_links():
    assert slack_escape("<!channel> hi <@U1>") == "&lt;!channel&gt; hi &lt;@U1&gt;"
    assert slack_escape("<https://x.test|click>") == "&lt;https://x.test|click&gt;"


def test_slack_escape_escapes_the_three_characters_and_nothing_else():
    assert slack_escape("a & b < c > d") == "a &amp; b &lt; c &gt; d"
    assert slack_escape("&amp;") == "&amp;amp;"
    assert slack_escape("*bold* _it_ ```code``` \"q\" 'a' @here") == (
        "*bold* _it_ ```code``` \"q\" 'a' @here"
    )


# --- persona names ----------------------------------------------------------------------------


def test_discord_names_never_contain_discord_or_clyde():
    assert persona_name("Discord Claude", platform="discord") == "Disc0rd Claude"
    assert persona_name("CLYDE 2", platform="discord") == "CLYD3 2"
    assert persona_name("clydediscord", platform="discord") == "clyd3disc0rd"


def test_slack_names_keep_those_words():
    assert persona_name("Discord Clyde", platform="slack") == "Discord Clyde"


@pytest.mark.parametrize("platform", ["discord", "slack"])
def test_names_are_capped_at_80_and_never_empty(platform):
    assert persona_name("x" * 200, platform=platform) == "x" * 80
    assert persona_name("😀" * 50, platform=platform) == "😀" * 40
    assert persona_name("  \u200b\n ", platform=platform) == "Model"
    assert persona_name(" Claude \t  Opus\n1 ", platform=platform) == "Claude Opus 1"


def test_an_unknown_platform_is_refused():
    with pytest.raises(ValueError):
        persona_name("Claude", platform="irc")  # type: ignore[arg-type]


# --- per platform -----------------------------------------------------------------------------


def test_prepare_for_discord_fences_art_defuses_mentions_and_splits():
    text = "@everyone look\n" + BOX + "\n" + "\n".join("word " * 20 for _ in range(60))

    parts = prepare_for_discord(text)

    assert parts[0].startswith(f"@{ZWSP}everyone look\n```\n╔")
    assert len(parts) == 4 and all(len(part) <= DISCORD_LIMIT for part in parts)


def test_prepare_for_slack_escapes_after_fencing():
    text = "<!channel>\n  <-- arrow\n  --> back"

    assert prepare_for_slack(text) == ["&lt;!channel&gt;\n```\n  &lt;-- arrow\n  --&gt; back\n```"]


def test_prepare_drops_parts_that_are_only_whitespace():
    text = "a\n" + " " * 5000 + "\nb"

    parts = prepare_for_discord(text)

    assert split(text, DISCORD_LIMIT)[1] == " " * 2000
    assert parts == ["a\n" + " " * 1998, " " * 1002 + "\nb"]
    assert prepare_for_slack("  \n") == ["(no text)"]


def test_the_slack_limit_is_below_the_4000_slack_splits_at():
    assert SLACK_LIMIT < 4000 and DISCORD_LIMIT == 2000
