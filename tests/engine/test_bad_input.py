"""Bad input gets a message that says what was wrong and what is accepted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backrooms_engine import templates
from backrooms_engine.conversation import Conversation, participants_for
from backrooms_engine.errors import MissingKeyError, RegistryError, TemplateError, UnknownModelError
from backrooms_engine.records import RunSpec
from backrooms_engine.registry import check_keys, load_registry
from tests.conftest import fake_env
from tests.helpers import runtime


def _write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    d = tmp_path / "tpl"
    d.mkdir(exist_ok=True)
    (d / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return d


def test_unknown_model_lists_the_available_ones():
    with pytest.raises(UnknownModelError) as info:
        load_registry().get("gpt-9000")
    assert "'gpt-9000'" in str(info.value) and "opus" in str(info.value)
    assert "gpt4o" in str(info.value)


def test_unknown_template_lists_the_available_ones():
    with pytest.raises(TemplateError) as info:
        templates.find("nope", templates.search_path())
    assert "unknown template 'nope'" in str(info.value)
    assert "cli" in str(info.value) and "student" in str(info.value)


def test_participant_count_mismatch_says_how_many_it_takes():
    reg = load_registry()
    tpl = templates.find("cli", templates.search_path())
    with pytest.raises(TemplateError) as info:
        Conversation(tpl, participants_for(reg.resolve(["opus", "gpt4o", "sonnet"])))
    assert "takes 2 participants, got 3 (opus gpt4o sonnet)" in str(info.value)


def test_world_interface_must_sit_on_a_cli_line():
    reg = load_registry()
    tpl = templates.find("cli", templates.search_path())
    with pytest.raises(TemplateError) as info:
        Conversation(tpl, participants_for(reg.resolve(["opus", "cli"])))
    assert "cli_with_world_interface" in str(info.value)
    wi = templates.find("cli_with_world_interface", templates.search_path())
    with pytest.raises(TemplateError) as info:
        Conversation(wi, participants_for(reg.resolve(["opus", "gpt4o"])))
    assert "put the `cli` model in position 2" in str(info.value)


def test_malformed_json_names_file_and_line(tmp_path):
    good = json.dumps({"system_prompt": "", "context": [{"role": "user", "content": "hi"}]})
    d = _write(tmp_path, "broken", [good, '{"system_prompt": "x", "context": [}'])
    with pytest.raises(TemplateError) as info:
        templates.find("broken", [d])
    assert f"{d / 'broken.jsonl'}:2: malformed JSON" in str(info.value)


def test_wrong_shape_names_line_and_expected_form(tmp_path):
    d = _write(tmp_path, "shape", [json.dumps({"prompt": "x"})])
    with pytest.raises(TemplateError) as info:
        templates.find("shape", [d])
    assert "shape.jsonl:1" in str(info.value) and '"system_prompt"' in str(info.value)
    d = _write(
        tmp_path,
        "role",
        [json.dumps({"system_prompt": "", "context": [{"role": "system", "content": "x"}]})],
    )
    with pytest.raises(TemplateError) as info:
        templates.find("role", [d])
    assert "role.jsonl:1" in str(info.value) and '"user" or "assistant"' in str(info.value)


def test_unknown_placeholder_names_it_and_the_accepted_ones(tmp_path):
    line = json.dumps({"system_prompt": "hello {lm3_actor}", "context": []})
    d = _write(tmp_path, "ph", [line, line])
    with pytest.raises(TemplateError) as info:
        templates.find("ph", [d])
    message = str(info.value)
    assert "ph.jsonl:1: unknown placeholder {lm3_actor}" in message
    assert "{lm1_actor}" in message and "{lm2_company}" in message


def test_stray_brace_is_reported_with_its_line(tmp_path):
    good = json.dumps({"system_prompt": "", "context": []})
    d = _write(tmp_path, "brace", [good, json.dumps({"system_prompt": "a } b", "context": []})])
    with pytest.raises(TemplateError) as info:
        templates.find("brace", [d])
    assert "brace.jsonl:2" in str(info.value) and "{{" in str(info.value)


def test_a_test_written_template_renders_placeholders_and_inlines_system(tmp_path):
    line1 = {
        "system_prompt": "You are {lm1_actor}; the other is {lm2_actor} of {lm2_company}.",
        "context": [{"role": "assistant", "content": "ok"}],
    }
    line2 = {"system_prompt": "", "context": [{"role": "user", "content": "hi {lm1_actor}"}]}
    d = _write(tmp_path, "own", [json.dumps(line1), json.dumps(line2)])
    reg = load_registry()
    conv = Conversation(
        templates.find("own", [d]), participants_for(reg.resolve(["gpt4o", "opus"]))
    )
    first, second = conv.request(0), conv.request(1)
    # gpt4o inlines: no user message in its context, so the system prompt becomes a new one.
    assert first.system is None
    assert [m.as_dict() for m in first.messages] == [
        {"role": "assistant", "content": "ok"},
        {
            "role": "user",
            "content": "<SYSTEM>You are GPT4o 1; the other is Claude 2 of anthropic.</SYSTEM>",
        },
    ]
    assert second.system is None  # empty system prompt: the field is omitted
    assert second.messages[0].content == "hi GPT4o 1"


def test_malformed_registry_reports_file_and_line(tmp_path):
    user = tmp_path / "models.toml"
    user.write_text('[models.mine]\nprovider = "anthropic"\napi_id = \n', encoding="utf-8")
    with pytest.raises(RegistryError) as info:
        load_registry(user)
    assert str(user) in str(info.value) and "line 3" in str(info.value)


def test_registry_field_errors_point_at_the_table(tmp_path):
    user = tmp_path / "models.toml"
    user.write_text(
        '# mine\n\n[models.mine]\nprovider = "nowhere"\ndisplay_name = "M"\ncompany = "x"\n',
        encoding="utf-8",
    )
    with pytest.raises(RegistryError) as info:
        load_registry(user)
    assert f"{user}:3" in str(info.value) and "unknown provider 'nowhere'" in str(info.value)
    user.write_text(
        '[models.mine]\nprovider = "openai"\ndisplay_name = "M"\ncompany = "x"\n'
        'system_prompt = "loud"\n',
        encoding="utf-8",
    )
    with pytest.raises(RegistryError) as info:
        load_registry(user)
    assert "accepted: native, developer, inline" in str(info.value)


def test_user_registry_adds_and_replaces_models(tmp_path):
    user = tmp_path / "models.toml"
    user.write_text(
        '[providers.local]\nkind = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
        'key_required = false\n\n[models.mine]\nprovider = "local"\napi_id = "m-1"\n'
        'display_name = "Mine"\ncompany = "me"\n\n[models.opus]\nprovider = "anthropic"'
        '\napi_id = "claude-opus-4-8"\ndisplay_name = "Claude"\ncompany = "anthropic"\n',
        encoding="utf-8",
    )
    reg = load_registry(user)
    assert reg.get("mine").log_folder == "MineExplorations"
    assert reg.get("opus").api_id == "claude-opus-4-8"
    assert reg.get("gpt4o").api_id == "gpt-4o-2024-08-06"


def test_missing_keys_are_named_only_for_providers_used():
    reg = load_registry()
    check_keys(reg.resolve(["offline", "cli", "ollama-llama"]), {})  # none needed
    with pytest.raises(MissingKeyError) as info:
        check_keys(reg.resolve(["opus", "gpt4o", "sonnet"]), {"OPENAI_API_KEY": "x"})
    message = str(info.value)
    assert "ANTHROPIC_API_KEY (needed by opus, sonnet)" in message
    assert "OPENAI_API_KEY" not in message


async def test_missing_key_refuses_before_anything_is_sent_or_stored(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    del env["ANTHROPIC_API_KEY"]
    async with runtime(env) as rt:
        with pytest.raises(MissingKeyError):
            await rt.manager.start(RunSpec(models=("opus", "gpt4o")))
        assert await rt.archive.list_runs() == []
    assert model_server.requests == []
    assert not (tmp_path / "BackroomsLogs").exists()


def test_an_edited_template_is_read_again(tmp_path):
    line = {"system_prompt": "first", "context": []}
    d = _write(tmp_path, "edit", [json.dumps(line)])
    assert templates.find("edit", [d]).lines[0].system_prompt == "first"
    _write(tmp_path, "edit", [json.dumps({**line, "system_prompt": "second, longer"})])
    assert templates.find("edit", [d]).lines[0].system_prompt == "second, longer"
