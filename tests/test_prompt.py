"""FIM templates: exact spelling per family, detection from a tokenizer's special tokens."""

from __future__ import annotations

import os

import pytest

from lsp_server.completion.prompt import (
    FORMATS,
    PREFIX_ONLY,
    PromptFormat,
    Snippet,
    build_prompt,
    detect_format,
    fim_example,
    get_format,
    trainable_format,
    training_document,
)
from tests.tiny import build_tokenizer

PRE, SUF = "def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n"

# The bare template of each family, as its model card or reference code spells it.
EXPECTED = {
    "prefix-only": f"{PRE}",
    "starcoder": f"<fim_prefix>{PRE}<fim_suffix>{SUF}<fim_middle>",
    "starcoder1": f"<fim_prefix>{PRE}<fim_suffix>{SUF}<fim_middle>",
    "qwen2.5-coder": f"<|fim_prefix|>{PRE}<|fim_suffix|>{SUF}<|fim_middle|>",
    # Fullwidth bars (U+FF5C) and lower one-eighth blocks (U+2581), as in its tokenizer.
    "deepseek-coder": "<\uff5cbegin\u2581of\u2581sentence\uff5c>"
    f"<｜fim▁begin｜>{PRE}<｜fim▁hole｜>{SUF}<｜fim▁end｜>",
    "codellama": f"<s><PRE> {PRE} <SUF>{SUF} <MID>",
    "codestral": f"<s>[SUFFIX]{SUF}[PREFIX]{PRE}",
    "codegemma": f"<bos><|fim_prefix|>{PRE}<|fim_suffix|>{SUF}<|fim_middle|>",
    # SmolLM2's spare special tokens stand in for FIM markers (a learned format).
    "smollm2-fim": f"<issue_start>{PRE}<issue_comment>{SUF}<issue_closed>",
}

CONTEXT = [Snippet("util/math.py", "def mul(a, b):\n    return a * b\n")]

# With the current file's path, one snippet of another file and the repository's name.
EXPECTED_REPO = {
    "prefix-only": f"# util/math.py\n# def mul(a, b):\n#     return a * b\n# app.py\n{PRE}",
    "starcoder": "<repo_name>me/calc<file_sep>util/math.py\ndef mul(a, b):\n    return a * b\n"
    f"<file_sep><fim_prefix>app.py\n{PRE}<fim_suffix>{SUF}<fim_middle>",
    "qwen2.5-coder": "<|repo_name|>me/calc\n<|file_sep|>util/math.py\n"
    "def mul(a, b):\n    return a * b\n<|file_sep|>app.py\n"
    f"<|fim_prefix|>{PRE}<|fim_suffix|>{SUF}<|fim_middle|>",
    "deepseek-coder": "<｜begin▁of▁sentence｜><｜fim▁begin｜># util/math.py\n"
    f"# def mul(a, b):\n#     return a * b\n# app.py\n{PRE}<｜fim▁hole｜>{SUF}<｜fim▁end｜>",
    "codestral": f"<s>[SUFFIX]{SUF}[PREFIX]# util/math.py\n# def mul(a, b):\n"
    f"#     return a * b\n# app.py\n{PRE}",
    "codegemma": "<bos><|file_separator|>util/math.py\ndef mul(a, b):\n    return a * b\n"
    f"<|file_separator|>app.py\n<|fim_prefix|>{PRE}<|fim_suffix|>{SUF}<|fim_middle|>",
    "smollm2-fim": "<repo_name>me/calc\n<file_sep>util/math.py\ndef mul(a, b):\n"
    f"    return a * b\n<file_sep>app.py\n<issue_start>{PRE}<issue_comment>{SUF}<issue_closed>",
}


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One tiny tokenizer per family, with that family's markers as special tokens."""
    out = {}
    for name, fmt in FORMATS.items():
        extra = [t for t in (fmt.bos, *fmt.special_tokens, *fmt.stop_tokens) if t]
        extra = [t.strip() for t in dict.fromkeys(extra) if t.strip() != "<|endoftext|>"]
        out[name] = build_tokenizer(tmp_path_factory.mktemp(name), extra, vocab_size=300)
    return out


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bare_template(name: str) -> None:
    assert build_prompt(FORMATS[name], PRE, SUF) == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED_REPO))
def test_repo_level_template(name: str) -> None:
    prompt = build_prompt(FORMATS[name], PRE, SUF, path="app.py", context=CONTEXT, repo="me/calc")
    assert prompt == EXPECTED_REPO[name]


def test_every_format_has_a_version_and_a_test() -> None:
    assert set(EXPECTED) == set(FORMATS)
    assert all(isinstance(f.version, int) and f.version >= 1 for f in FORMATS.values())


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_training_examples_are_serving_prompts_plus_the_answer(name: str) -> None:
    fmt = FORMATS[name]
    mid = "a + b"
    example = fim_example(fmt, PRE, mid, SUF, path="app.py")
    assert example == build_prompt(fmt, PRE, SUF, path="app.py") + mid
    # A plain document is headed as the server heads the current file.
    document = training_document(fmt, PRE + mid + SUF, path="app.py")
    if not fmt.is_fim:
        assert document == build_prompt(fmt, PRE + mid + SUF, path="app.py")
    else:
        assert document.startswith(fmt.bos) and document.endswith(PRE + mid + SUF)
        assert not any(m in document for m in (fmt.prefix, fmt.suffix, fmt.middle) if m.strip())


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_detected_from_tokenizer(name: str, tokenizers: dict) -> None:
    tok = tokenizers[name]
    special = [*tok.all_special_tokens, *tok.get_added_vocab()]
    # A learned format's markers mean nothing to the bare model: it is only taught.
    assert detect_format(special).name == ("prefix-only" if FORMATS[name].learned else name)
    assert trainable_format(special).name == name


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_markers_are_single_tokens(name: str, tokenizers: dict) -> None:
    """Each marker in the prompt text encodes to its one special id, and decoding round-trips."""
    tok, fmt = tokenizers[name], FORMATS[name]
    prompt = build_prompt(fmt, PRE, SUF, path="app.py", context=CONTEXT, repo="me/calc")
    ids = tok.encode(prompt, add_special_tokens=False)
    vocab = tok.get_vocab()
    for marker in {m.strip() for m in (fmt.bos, *fmt.special_tokens) if m}:
        if marker in prompt:
            assert vocab[marker] in ids, marker
    assert tok.decode(ids) == prompt


def test_prefix_only_for_a_tokenizer_without_fim_tokens() -> None:
    assert detect_format(["<|endoftext|>", "<|im_start|>"]) is PREFIX_ONLY


def test_codegemma_and_qwen_told_apart() -> None:
    fim = ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"]
    assert detect_format([*fim, "<|file_sep|>"]).name == "qwen2.5-coder"
    assert detect_format([*fim, "<|file_separator|>"]).name == "codegemma"


def test_override_by_name() -> None:
    assert get_format("codellama").name == "codellama"
    with pytest.raises(ValueError, match="use one of"):
        get_format("gpt-17")


def test_json_gets_no_comment_headers() -> None:
    """JSON has no comments: a path header would teach the model to write invalid JSON."""
    prompt = build_prompt(PREFIX_ONLY, '{"a": ', "", path="package.json", context=CONTEXT)
    assert prompt == '{"a": '


def test_comment_syntax_follows_the_language() -> None:
    prompt = build_prompt(PREFIX_ONLY, "let x = ", "", path="src/main.rs", context=CONTEXT)
    assert prompt.startswith("// util/math.py\n// def mul(a, b):\n")
    assert "// src/main.rs\nlet x = " in prompt


def test_layout_puts_stable_parts_first() -> None:
    """Typing at the cursor only changes the prompt after the context and headers."""
    fmt: PromptFormat = FORMATS["qwen2.5-coder"]
    a = build_prompt(fmt, PRE, SUF, path="app.py", context=CONTEXT)
    b = build_prompt(fmt, PRE + "a", SUF, path="app.py", context=CONTEXT)
    assert os.path.commonprefix([a, b]).endswith(PRE)
