"""Prompt formats: the one place that knows how each model family spells fill-in-the-middle.

Pure: no torch, no pygls. The server builds its prompts here and `finetune`
builds its training documents and FIM examples here (`training_document`,
`fim_example`), so an adapter sees at serving time exactly the layout it was
trained on. A format's `version` is recorded in adapters and checked when one
is loaded (`lsp_server.model.adapter_meta`): bump it whenever the text a format
produces changes, and adapters trained on the old text are refused with a hint
to retrain.

The prompt text is complete, BOS included where the family was trained with
one: tokenize it with `add_special_tokens=False`.

Layout, first to last: BOS, repository name, extra context files, the current
file's path header, then the prefix (clipped at its start), the suffix and the
middle marker. What changes least comes first, so while the user types only the
end of the prompt changes and the engine's KV prefix reuse keeps hitting.
Formats with a native file separator (`<|file_sep|>`, `<file_sep>`,
`<|file_separator|>`) get native headers; the others get a comment in the
current file's language (`# utils.py`), with context lines commented out.
A `learned` format (`smollm2-fim`: FIM for SmolLM2 with spare tokens of its
vocabulary) is never detected from a tokenizer: a model uses it only through an
adapter trained on it (`trainable_format` names what `finetune` can teach when asked).
Paths in headers are made safe first (`header_path`): secrets in them are
redacted, and a newline, a control character, a comment's end or a format
marker in a file name is escaped, so a name can never add a line or a token.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from lsp_server.completion.languages import PLAIN, Language, language_for
from lsp_server.repo.secrets import redact_path

Order = Literal["psm", "spm"]


@dataclass(frozen=True)
class PromptFormat:
    """How one model family lays out a completion prompt."""

    name: str
    version: int = 1
    prefix: str = ""  # FIM markers; all empty for a prefix-only format
    suffix: str = ""
    middle: str = ""
    order: Order = "psm"  # "spm": the suffix comes first (Codestral)
    file_sep: str = ""  # marker before a file path header, e.g. "<|file_sep|>"
    repo_name: str = ""  # marker before the repository name (Qwen2.5-Coder)
    # Tokens that end a completion besides the tokenizer's EOS.
    stop_tokens: tuple[str, ...] = field(default_factory=tuple)
    # Text that starts every prompt, for families trained with a BOS marker.
    bos: str = ""
    # StarCoder2 puts the current file's path inside the prefix:
    # `<file_sep><fim_prefix>path\ncode...`; Qwen puts it before `<|fim_prefix|>`.
    path_in_prefix: bool = False
    # Markers the model was not pretrained on (spare tokens of its tokenizer): only an
    # adapter trained on them can use them, so the tokenizer alone never selects it.
    learned: bool = False

    @property
    def is_fim(self) -> bool:
        return bool(self.prefix and self.suffix)

    @property
    def special_tokens(self) -> tuple[str, ...]:
        markers = (self.prefix, self.suffix, self.middle, self.file_sep, self.repo_name)
        return tuple(t for t in markers if t)


PREFIX_ONLY = PromptFormat("prefix-only", stop_tokens=("<|endoftext|>",))

# SmolLM2 has no FIM tokens, but its StarCoder-style vocabulary holds special tokens that
# code files never contain: GitHub issue markers stand in for the FIM markers, and
# `<file_sep>`/`<repo_name>` head files as StarCoder2 and Qwen do. The layout is Qwen's
# (path header before the prefix marker). A `learned` format: an adapter teaches it.
SMOLLM2_FIM = PromptFormat(
    "smollm2-fim",
    prefix="<issue_start>",
    suffix="<issue_comment>",
    middle="<issue_closed>",
    file_sep="<file_sep>",
    repo_name="<repo_name>",
    stop_tokens=("<|endoftext|>", "<file_sep>", "<repo_name>", "<issue_start>"),
    learned=True,
)

FORMATS: dict[str, PromptFormat] = {
    f.name: f
    for f in (
        PREFIX_ONLY,
        SMOLLM2_FIM,
        # StarCoder2 (BigCode, arXiv 2402.19173 sec. 5), repository-level FIM:
        # <repo_name>r<file_sep>path\ncode<file_sep><fim_prefix>path\npre<fim_suffix>suf<fim_middle>
        PromptFormat(
            "starcoder",
            version=2,
            prefix="<fim_prefix>",
            suffix="<fim_suffix>",
            middle="<fim_middle>",
            file_sep="<file_sep>",
            repo_name="<repo_name>",
            path_in_prefix=True,
            stop_tokens=("<|endoftext|>", "<file_sep>", "<fim_prefix>", "<repo_name>"),
        ),
        # StarCoder (1) and StarCoderBase share the FIM markers but have no file
        # separator: context goes in as comments.
        PromptFormat(
            "starcoder1",
            prefix="<fim_prefix>",
            suffix="<fim_suffix>",
            middle="<fim_middle>",
            stop_tokens=("<|endoftext|>", "<fim_prefix>"),
        ),
        PromptFormat(
            "qwen2.5-coder",
            prefix="<|fim_prefix|>",
            suffix="<|fim_suffix|>",
            middle="<|fim_middle|>",
            file_sep="<|file_sep|>",
            repo_name="<|repo_name|>",
            stop_tokens=(
                "<|endoftext|>",
                "<|fim_pad|>",
                "<|file_sep|>",
                "<|repo_name|>",
                "<|fim_prefix|>",
                "<|im_end|>",
            ),
        ),
        PromptFormat(
            "deepseek-coder",
            version=2,
            bos="<｜begin▁of▁sentence｜>",
            prefix="<｜fim▁begin｜>",
            suffix="<｜fim▁hole｜>",
            middle="<｜fim▁end｜>",
            stop_tokens=("<｜end▁of▁sentence｜>", "<|EOT|>"),
        ),
        # Meta's reference code builds `<s><PRE> {pre} <SUF>{suf} <MID>`: sentencepiece
        # puts a space before the prefix; the suffix is encoded without one.
        PromptFormat(
            "codellama",
            version=2,
            bos="<s>",
            prefix="<PRE> ",
            suffix=" <SUF>",
            middle=" <MID>",
            stop_tokens=("<EOT>",),
        ),
        PromptFormat(
            "codestral",
            version=2,
            bos="<s>",  # mistral-common: [BOS] [SUFFIX] suffix [PREFIX] prefix
            prefix="[PREFIX]",
            suffix="[SUFFIX]",
            # Mistral's FIM has no middle marker: generation follows the prefix.
            order="spm",
            stop_tokens=("</s>",),
        ),
        PromptFormat(
            "codegemma",
            version=2,
            bos="<bos>",
            prefix="<|fim_prefix|>",
            suffix="<|fim_suffix|>",
            middle="<|fim_middle|>",
            file_sep="<|file_separator|>",
            stop_tokens=("<|file_separator|>", "<|fim_prefix|>", "<eos>"),
        ),
    )
}


def detect_format(special_tokens: Iterable[str]) -> PromptFormat:
    """Pick the format whose FIM markers the tokenizer knows; prefix-only when none match.

    `special_tokens` is every added/special token of the tokenizer. Families that
    share markers are told apart by tokens only one of them has (CodeGemma's
    `<|file_separator|>` against Qwen's `<|file_sep|>`).
    """
    known = {t.strip() for t in special_tokens}

    def has(*tokens: str) -> bool:
        return all(t.strip() in known for t in tokens)

    if has("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"):
        return FORMATS["codegemma" if has("<|file_separator|>") else "qwen2.5-coder"]
    if has("<fim_prefix>", "<fim_suffix>", "<fim_middle>"):
        return FORMATS["starcoder" if has("<file_sep>") else "starcoder1"]
    if has("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"):
        return FORMATS["deepseek-coder"]
    if has("[PREFIX]", "[SUFFIX]"):
        return FORMATS["codestral"]
    if has("<PRE>", "<SUF>", "<MID>"):
        return FORMATS["codellama"]
    return PREFIX_ONLY


def trainable_format(special_tokens: Iterable[str]) -> PromptFormat:
    """The format an adapter for this tokenizer should learn: its own FIM format, else a
    `learned` one whose markers it holds (SmolLM2's), else prefix-only."""
    native = detect_format(special_tokens)
    if native.is_fim:
        return native
    known = {t.strip() for t in special_tokens}
    spare = (f for f in FORMATS.values() if f.learned and set(f.special_tokens) <= known)
    return next(spare, native)


def get_format(name: str) -> PromptFormat:
    """The format called `name`; a ValueError naming the known ones otherwise."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(
            f"unknown prompt format '{name}': use one of {', '.join(sorted(FORMATS))}"
        ) from None


@dataclass(frozen=True)
class Snippet:
    """Code from another file, shown to the model before the current file."""

    path: str  # workspace-relative, as the model saw paths in training
    text: str


def build_prompt(
    fmt: PromptFormat,
    prefix: str,
    suffix: str = "",
    *,
    path: str | None = None,
    context: Sequence[Snippet] = (),
    repo: str | None = None,
) -> str:
    """The prompt text for completing between `prefix` and `suffix`.

    `path` (the current file, workspace-relative), `context` (snippets of other
    files, most relevant last, i.e. nearest the cursor) and `repo` (the
    repository's name) are optional; without them the prompt is the bare FIM
    template. A prefix-only format ignores the suffix. For SPM formats the
    suffix necessarily precedes the prefix.
    """
    outside, inside = _headers(fmt, path, context, repo)
    if not fmt.is_fim:
        return f"{fmt.bos}{outside}{inside}{prefix}"
    if fmt.order == "spm":
        return f"{fmt.bos}{fmt.suffix}{suffix}{fmt.prefix}{outside}{inside}{prefix}"
    return f"{fmt.bos}{outside}{fmt.prefix}{inside}{prefix}{fmt.suffix}{suffix}{fmt.middle}"


def training_document(fmt: PromptFormat, text: str, *, path: str | None = None) -> str:
    """A plain (left-to-right) training document: `text` headed as `build_prompt` heads
    the current file, so the adapter learns the layout it is served with."""
    outside, inside = _headers(fmt, path, (), None)
    return f"{fmt.bos}{outside}{inside}{text}"


def fim_example(
    fmt: PromptFormat,
    prefix: str,
    middle: str,
    suffix: str,
    *,
    spm: bool = False,
    path: str | None = None,
) -> str:
    """A fill-in-the-middle training example: the serving prompt for (prefix, suffix), then
    the middle the model should write.

    `spm` asks for the suffix-prefix-middle variant of a PSM format with a middle
    marker (StarCoder's SPM: `<pre><suf>suffix<mid>prefix middle`), which trains
    the same markers in the other order; formats that are SPM by nature (Codestral)
    get their own order from `build_prompt` either way.
    """
    if spm and fmt.order == "psm" and fmt.middle:
        outside, inside = _headers(fmt, path, (), None)
        head = f"{fmt.bos}{outside}{fmt.prefix}{fmt.suffix}{suffix}{fmt.middle}"
        return f"{head}{inside}{prefix}{middle}"
    return build_prompt(fmt, prefix, suffix, path=path) + middle


def _headers(
    fmt: PromptFormat, path: str | None, context: Sequence[Snippet], repo: str | None
) -> tuple[str, str]:
    """The headers before and after the prefix marker, in the format's native spelling.

    Qwen and CodeGemma put everything before `<|fim_prefix|>`; StarCoder2 puts
    the current file's path after `<fim_prefix>`; comment headers are part of
    the code, so they go after the marker too (as in DeepSeek-Coder's examples).
    """
    path = header_path(path, fmt) if path else path
    context = [Snippet(header_path(s.path, fmt), s.text) for s in context]
    if fmt.file_sep:
        parts = []
        if repo and fmt.repo_name:
            # StarCoder2 runs the name into the first separator; Qwen ends it with a newline.
            parts.append(f"{fmt.repo_name}{repo}" + ("" if fmt.path_in_prefix else "\n"))
        parts += [f"{fmt.file_sep}{s.path}\n{_with_newline(s.text)}" for s in context]
        if fmt.path_in_prefix:
            if parts or path:
                parts.append(fmt.file_sep)
            return "".join(parts), f"{path}\n" if path else ""
        if path:
            parts.append(f"{fmt.file_sep}{path}\n")
        return "".join(parts), ""
    lang = language_for(path)
    if lang is PLAIN or not (lang.line_comment or lang.block_comment[0]):
        # JSON has no comments: a header would be a syntax error the model copies;
        # and for an unknown language any guess at its comment syntax may be one.
        return "", ""
    parts = [comment_block(lang, s.path, s.text) for s in context]
    if path:
        parts.append(lang.comment(_escape_comment_end(lang, path)) + "\n")
    return "", "".join(parts)


def comment_block(lang: Language, path: str, text: str) -> str:
    """A snippet of another file as comments in `lang`, headed by its path.

    Commented out, so that a model without file separators does not take the
    snippet for the start of the current file.
    """
    lines = [lang.comment(_escape_comment_end(lang, path))]
    lines += [lang.comment(line).rstrip() for line in text.rstrip("\n").split("\n")]
    return "\n".join(lines) + "\n"


# Line breaks (including U+0085, U+2028, U+2029) and other control characters.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def header_path(path: str, fmt: PromptFormat | None = None) -> str:
    """`path` as it may head a file in a prompt: one line, no secret, no format marker.

    Control characters become escapes (`\\n`), so a file name cannot start a
    line of its own; the format's special tokens are broken by a backslash
    (`<|file_sep|>` -> `<\\|file_sep|>`), so a name cannot be read as one.
    """
    path = _UNSAFE.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), path)
    for token in (fmt.special_tokens + fmt.stop_tokens + (fmt.bos,)) if fmt else ():
        if len(token := token.strip()) > 1:
            path = path.replace(token, f"{token[0]}\\{token[1:]}")
    return redact_path(path)


def _escape_comment_end(lang: Language, path: str) -> str:
    """A block comment's end (`*/`, `-->`) in a path, broken so it does not end the comment."""
    end = lang.block_comment[1]
    return path.replace(end, f"{end[0]}\\{end[1:]}") if end and not lang.line_comment else path


def _with_newline(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"
