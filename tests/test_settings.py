"""Settings: camelCase on the wire, typed inside, a bad value reported and the default kept."""

from __future__ import annotations

from lsp_server.session.model_choice import model_spec
from lsp_server.session.settings import (
    Settings,
    client_draws_next_edits,
    parse_settings,
    unknown_keys,
)


def test_camel_case_keys_fill_the_dataclass():
    raw = {
        "model": "Qwen/Qwen2.5-Coder-1.5B",
        "adapter": "/tmp/adapter",
        "device": "cuda:1",
        "dtype": "bf16",
        "maxTokens": 32,
        "multiline": "never",
        "timeBudgetMs": 500,
        "firstTokenTimeoutMs": 30000,
        "enable": False,
        "promptFormat": "starcoder",
        "context": False,
        "engine": "openai:http://gpu-box:8000",
        "feedback": False,
        "quietness": 40,
        "nextEdit": False,
        "nextEditDebounceMs": 50,
        "nextEditWindowLines": 3,
        "nextEditFormat": "zeta",
    }
    settings, problems = parse_settings(raw, Settings())
    assert problems == []
    assert settings == Settings(
        model="Qwen/Qwen2.5-Coder-1.5B",
        adapter="/tmp/adapter",
        device="cuda:1",
        dtype="bf16",
        max_tokens=32,
        multiline="never",
        time_budget_ms=500,
        first_token_timeout_ms=30000,
        enable=False,
        prompt_format="starcoder",
        context=False,
        engine="openai:http://gpu-box:8000",
        feedback=False,
        quietness=40,
        next_edit=False,
        next_edit_debounce_ms=50,
        next_edit_window_lines=3,
        next_edit_format="zeta",
    )
    assert settings.to_wire() == raw


def test_multiline_maps_to_completer_modes():
    assert Settings(multiline="auto").mode == "auto"
    assert Settings(multiline="always").mode == "block"
    assert Settings(multiline="never").mode == "line"


def test_invalid_values_are_reported_and_the_previous_value_kept():
    base = Settings(max_tokens=48)
    raw = {"maxTokens": "lots", "multiline": "sometimes", "timeBudgetMs": 10, "enable": "yes"}
    settings, problems = parse_settings(raw, base)
    assert settings == base
    assert len(problems) == 4
    assert any("'maxTokens'" in p and "48" in p for p in problems)
    assert any("'multiline'" in p and "auto, always, never" in p for p in problems)


def test_numbers_must_be_whole_and_in_range():
    assert parse_settings({"maxTokens": 16.0}, Settings())[0].max_tokens == 16
    for bad in (16.5, 0, 5000, True):
        settings, problems = parse_settings({"maxTokens": bad}, Settings())
        assert settings.max_tokens == 64 and problems, bad


def test_a_codetailor_section_is_read_as_vscode_sends_it():
    raw = {"codetailor": {"maxTokens": 8}, "python": {"analysis": {}}}
    settings, problems = parse_settings(raw, Settings())
    assert settings.max_tokens == 8 and problems == []
    assert unknown_keys(raw) == []


def test_unknown_keys_are_listed_not_reported():
    settings, problems = parse_settings({"maxTokenz": 8, "authToken": "x"}, Settings())
    assert problems == [] and settings == Settings()
    assert unknown_keys({"maxTokenz": 8, "authToken": "x"}) == ["maxTokenz"]
    # What a client says of itself is not a setting, nor an unknown key.
    assert unknown_keys({"drawsNextEdits": True}) == []
    assert client_draws_next_edits({"drawsNextEdits": True})
    assert client_draws_next_edits({"codetailor": {"drawsNextEdits": True}})
    assert not client_draws_next_edits({"drawsNextEdits": "yes"})
    assert not client_draws_next_edits(None)


def test_null_returns_to_the_startup_default():
    startup = Settings(model="/models/tiny")
    current = Settings(model="other", max_tokens=8)
    settings, _ = parse_settings({"model": None, "maxTokens": None}, current, startup)
    assert settings.model == "/models/tiny" and settings.max_tokens == 64


def test_empty_or_odd_payloads_change_nothing():
    assert parse_settings(None, Settings()) == (Settings(), [])
    assert parse_settings({}, Settings()) == (Settings(), [])
    settings, problems = parse_settings([1, 2], Settings())
    assert settings == Settings() and len(problems) == 1


def test_the_model_spec_tracks_what_needs_a_reload():
    assert model_spec(Settings()) == model_spec(Settings(max_tokens=3, enable=False))
    assert model_spec(Settings()) != model_spec(Settings(device="cpu"))


def test_engine_is_local_or_an_openai_url():
    ok = {
        "local": "local",
        " LOCAL ": "local",
        "openai:http://127.0.0.1:8000": "openai:http://127.0.0.1:8000",
        "openai:https://gpu.example.com/v1/": "openai:https://gpu.example.com/v1",
    }
    for raw, parsed in ok.items():
        settings, problems = parse_settings({"engine": raw}, Settings())
        assert (settings.engine, problems) == (parsed, []), raw
    for bad in ("vllm", "openai:", "openai:ftp://x", "openai:http://", "http://x:8000", 3):
        settings, problems = parse_settings({"engine": bad}, Settings())
        assert settings.engine == "local" and len(problems) == 1, bad
        assert "'engine'" in problems[0]


def test_changing_the_engine_means_loading_again():
    assert model_spec(Settings()) != model_spec(Settings(engine="openai:http://127.0.0.1:8000"))
