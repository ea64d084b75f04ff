"""Where runs find their templates and put their transcripts, when many start at once."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from backrooms_engine import logfile, templates
from backrooms_engine.errors import TemplateError
from backrooms_engine.registry import load_registry


def test_runs_started_in_the_same_second_each_get_their_own_transcript(tmp_path: Path):
    specs = load_registry().resolve(["opus", "gpt4o"])
    second = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
    stem = "opus_gpt4o_cli_" + second.astimezone().strftime("%Y%m%d_%H%M%S")
    folder = tmp_path / specs[0].log_folder
    first = logfile.allocate(tmp_path, specs, "cli", second)
    second_run = logfile.allocate(tmp_path, specs, "cli", second)
    assert [first, second_run] == [folder / f"{stem}.txt", folder / f"{stem}_2.txt"]
    # Another process takes the next name meanwhile: it is skipped, never reused.
    (folder / f"{stem}_3.txt").write_text("someone else's run")
    paths = [logfile.allocate(tmp_path, specs, "cli", second) for _ in range(30)]
    assert paths == [folder / f"{stem}_{n}.txt" for n in range(4, 34)]
    assert all(p.read_text() == "" for p in paths)  # each created empty, by this process
    assert (folder / f"{stem}_3.txt").read_text() == "someone else's run"


def test_a_template_added_or_removed_while_the_service_runs_is_seen(tmp_path: Path):
    cli = templates.available(templates.search_path())["cli"]
    past = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    os.utime(tmp_path, (past, past))  # a directory untouched for a while: its listing is kept
    with pytest.raises(TemplateError, match="unknown template 'late'"):
        templates.find("late", [tmp_path])
    added = tmp_path / f"late{templates.SUFFIX}"
    added.write_text(cli.read_text())
    assert templates.find("late", [tmp_path]).size == 2
    os.utime(tmp_path, (past + 60, past + 60))  # as if added long ago; then it is removed
    templates.find("late", [tmp_path])
    added.unlink()
    with pytest.raises(TemplateError, match="unknown template 'late'"):
        templates.find("late", [tmp_path])
