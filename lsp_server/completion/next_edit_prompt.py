"""Next-edit prompt layouts: the one place that knows how a model is asked for its next edit.

The default layout is Sweep's open one ("oss-next-edit"), written with the model's
own file separator token (`<|file_sep|>` for Qwen2.5-Coder, `<file_sep>` for
SmolLM2 and StarCoder2, `<|file_separator|>` for CodeGemma): first the recent
changes, oldest first, one block each,

    <sep>{path}.diff
    original:
    {the changed lines before}
    updated:
    {the changed lines after}

then the window as it was before them, as it is now, and the header the model
writes the window as it will be after:

    <sep>original/{path}
    {window before the recent changes}
    <sep>current/{path}
    {window now}
    <sep>updated/{path}

The model ends the window with the separator (`end_marker`); an output equal to the
current window means "no edit". What changes least comes first (older edits, then
the original window), so the engine's KV prefix reuse keeps most of the prompt.

A model trained on another layout is served by naming it (the `nextEditFormat`
setting): `NEXT_EDIT_FORMATS` holds them by name; `zeta` is Zed's editable-region
layout. Pure: no pygls, no torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lsp_server.completion.next_edit import NextEditRequest, RecentEdit
from lsp_server.completion.prompt import header_path

# A tokenizer's file separator tokens, most specific first; a model with none gets the
# first as plain text.
FILE_SEPARATORS = ("<|file_sep|>", "<file_sep>", "<|file_separator|>")


def detect_separator(special_tokens: Iterable[str]) -> str:
    """The file separator among the tokenizer's special (and added) tokens."""
    known = {t.strip() for t in special_tokens}
    return next((sep for sep in FILE_SEPARATORS if sep in known), FILE_SEPARATORS[0])


def with_newline(text: str) -> str:
    """`text` ending with a line break (empty text stays empty)."""
    return text if not text or text.endswith(("\n", "\r")) else text + "\n"


def safe_path(path: str, markers: Iterable[str]) -> str:
    """`path` as a header may hold it (see prompt.header_path), with the layout's own
    markers broken too, so that a file name can never read as a separator."""
    path = header_path(path)
    for marker in markers:
        if len(marker) > 1:
            path = path.replace(marker, f"{marker[0]}\\{marker[1:]}")
    return path


@dataclass(frozen=True)
class NextEditFormat:
    """One next-edit layout; `sep` is the model's file separator token."""

    name: str
    version: int = 1
    sep: str = FILE_SEPARATORS[0]

    def prompt(self, request: NextEditRequest) -> str:
        """The prompt text, ending where the model writes the updated window."""
        path = safe_path(request.path, self.sentinels)
        blocks = [self._diff_block(edit) for edit in request.history]
        window = request.window
        blocks.append(f"{self.sep}original/{path}\n{with_newline(window.original)}")
        blocks.append(f"{self.sep}current/{path}\n{with_newline(window.current)}")
        blocks.append(f"{self.sep}updated/{path}\n")
        return "".join(blocks)

    def history_block(self, edit: RecentEdit) -> str:
        """One recent change as the prompt spells it (to count its tokens)."""
        return self._diff_block(edit)

    def _diff_block(self, edit: RecentEdit) -> str:
        before, after = with_newline(edit.before), with_newline(edit.after)
        path = safe_path(edit.path, self.sentinels)
        return f"{self.sep}{path}.diff\noriginal:\n{before}updated:\n{after}"

    @property
    def end_marker(self) -> str:
        """What the model writes after the updated window."""
        return self.sep

    @property
    def sentinels(self) -> tuple[str, ...]:
        """Markers that must never reach the user's file."""
        return tuple(dict.fromkeys((*FILE_SEPARATORS, self.sep)))

    @property
    def layout_lines(self) -> tuple[str, ...]:
        """Whole lines of the layout itself (a history block's headings): a rewrite that
        adds one copies the prompt, not the user's code."""
        return ("original:", "updated:")

    def with_separator(self, sep: str) -> NextEditFormat:
        return NextEditFormat(self.name, self.version, sep)


ZETA_START = "<|editable_region_start|>"
ZETA_END = "<|editable_region_end|>"
ZETA_CURSOR = "<|user_cursor_is_here|>"
ZETA_INSTRUCTION = (
    "### Instruction:\nYou are a code completion assistant and your task is to analyze user "
    "edits and then rewrite an excerpt that the user provides, suggesting the appropriate "
    "edits within the excerpt, taking into account the cursor location.\n\n"
)


@dataclass(frozen=True)
class ZetaFormat(NextEditFormat):
    """Zed's Zeta layout: the edits as diffs, the excerpt between editable-region markers
    with the cursor marked; the model rewrites the region up to its end marker."""

    def prompt(self, request: NextEditRequest) -> str:
        path = safe_path(request.path, self.sentinels)
        window = request.window
        edits = "".join(self._diff_block(edit) for edit in request.history)
        current = window.current[: window.cursor] + ZETA_CURSOR + window.current[window.cursor :]
        excerpt = f"```{path}\n{ZETA_START}\n{with_newline(current)}{ZETA_END}\n```\n\n"
        return (
            f"{ZETA_INSTRUCTION}### User Edits:\n\n{edits}\n### User Excerpt:\n\n{excerpt}"
            f"### Response:\n```{path}\n{ZETA_START}\n"
        )

    def _diff_block(self, edit: RecentEdit) -> str:
        minus = "".join(f"-{line}\n" for line in edit.before.splitlines())
        plus = "".join(f"+{line}\n" for line in edit.after.splitlines())
        path = safe_path(edit.path, self.sentinels)
        return f'User edited "{path}":\n```diff\n{minus}{plus}```\n\n'

    @property
    def end_marker(self) -> str:
        return ZETA_END

    @property
    def sentinels(self) -> tuple[str, ...]:
        return (ZETA_START, ZETA_END, ZETA_CURSOR, *FILE_SEPARATORS)

    @property
    def layout_lines(self) -> tuple[str, ...]:
        return ("### User Edits:", "### User Excerpt:", "### Response:")

    def with_separator(self, sep: str) -> NextEditFormat:
        return self  # its markers are its own, whatever the tokenizer's separator


SWEEP = NextEditFormat("sweep")
NEXT_EDIT_FORMATS: dict[str, NextEditFormat] = {f.name: f for f in (SWEEP, ZetaFormat("zeta"))}


def next_edit_format(name: str | None, special_tokens: Iterable[str] = ()) -> NextEditFormat:
    """The layout called `name` (None: Sweep's), with the tokenizer's file separator;
    a ValueError naming the known ones for an unknown name."""
    fmt = NEXT_EDIT_FORMATS.get(name or SWEEP.name)
    if fmt is None:
        known = ", ".join(sorted(NEXT_EDIT_FORMATS))
        raise ValueError(f"unknown next-edit format '{name}': use one of {known}")
    return fmt.with_separator(detect_separator(special_tokens))
