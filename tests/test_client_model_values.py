"""A client's `model` and `adapter` values are checked once, with one clear line (issue 28:
over TCP a 300-character `model` failed `initialize` and left the session without a model)."""

from __future__ import annotations

import pytest

from lsp_server.errors import CodetailorError
from lsp_server.model.loading import resolve_model
from lsp_server.session.settings import Settings, parse_settings


@pytest.mark.parametrize("key", ["model", "adapter"])
@pytest.mark.parametrize("value", ["m" * 300, "a/" + "b" * 256, "x" * 2000, "tiny\x1b[2J"])
def test_an_unusable_model_or_adapter_value_keeps_the_one_in_use(key: str, value: str) -> None:
    base = Settings(model="tiny", adapter="auto")
    settings, problems = parse_settings({key: value, "maxTokens": 8}, base)
    assert getattr(settings, key) == getattr(base, key)
    assert settings.max_tokens == 8
    assert len(problems) == 1 and f"setting '{key}'" in problems[0]


def test_ordinary_model_values_still_pass() -> None:
    for value in ("smollm2-135m", "Qwen/Qwen2.5-Coder-1.5B", "/home/me/models/x.gguf"):
        settings, problems = parse_settings({"model": value}, Settings())
        assert settings.model == value and not problems


def test_a_model_name_too_long_for_the_file_system_is_one_clear_error() -> None:
    with pytest.raises(CodetailorError, match="cannot be used"):
        resolve_model("m" * 300)
