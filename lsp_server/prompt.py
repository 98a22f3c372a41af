"""Prompt formats: the one place that knows how each model family spells fill-in-the-middle.

Pure: no torch, no pygls. The server builds its prompts here and `finetune`
builds its training examples here, so an adapter sees at serving time exactly
the layout it was trained on. A format's `version` is recorded in adapters; bump
it whenever the text a format produces changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

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

    @property
    def is_fim(self) -> bool:
        return bool(self.prefix and self.suffix)

    @property
    def special_tokens(self) -> tuple[str, ...]:
        markers = (self.prefix, self.suffix, self.middle, self.file_sep, self.repo_name)
        return tuple(t for t in markers if t)


PREFIX_ONLY = PromptFormat("prefix-only", stop_tokens=("<|endoftext|>",))

FORMATS: dict[str, PromptFormat] = {
    f.name: f
    for f in (
        PREFIX_ONLY,
        PromptFormat(
            "starcoder",
            prefix="<fim_prefix>",
            suffix="<fim_suffix>",
            middle="<fim_middle>",
            file_sep="<file_sep>",
            stop_tokens=("<|endoftext|>", "<file_sep>", "<fim_prefix>"),
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
            prefix="<｜fim▁begin｜>",
            suffix="<｜fim▁hole｜>",
            middle="<｜fim▁end｜>",
            stop_tokens=("<｜end▁of▁sentence｜>", "<|EOT|>"),
        ),
        PromptFormat(
            "codellama",
            prefix="<PRE> ",
            suffix=" <SUF>",
            middle=" <MID>",
            stop_tokens=("<EOT>",),
        ),
        PromptFormat(
            "codestral",
            prefix="[PREFIX]",
            suffix="[SUFFIX]",
            # Mistral's FIM has no middle marker: generation follows the prefix.
            order="spm",
            stop_tokens=("</s>",),
        ),
        PromptFormat(
            "codegemma",
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
        return FORMATS["starcoder"]
    if has("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"):
        return FORMATS["deepseek-coder"]
    if has("[PREFIX]", "[SUFFIX]"):
        return FORMATS["codestral"]
    if has("<PRE>", "<SUF>", "<MID>"):
        return FORMATS["codellama"]
    return PREFIX_ONLY


def get_format(name: str) -> PromptFormat:
    """The format called `name`; a ValueError naming the known ones otherwise."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(
            f"unknown prompt format '{name}': use one of {', '.join(sorted(FORMATS))}"
        ) from None


def build_prompt(fmt: PromptFormat, prefix: str, suffix: str = "") -> str:
    """The prompt text for completing between `prefix` and `suffix`.

    A prefix-only format ignores the suffix. Everything that stays put while the
    user types comes first, so the engine's KV prefix reuse keeps hitting; for
    SPM formats the suffix necessarily precedes the prefix.
    """
    if not fmt.is_fim:
        return fmt.bos + prefix
    if fmt.order == "spm":
        return f"{fmt.bos}{fmt.suffix}{suffix}{fmt.prefix}{prefix}"
    return f"{fmt.bos}{fmt.prefix}{prefix}{fmt.suffix}{suffix}{fmt.middle}"
