"""From a document and a cursor to a completion: window, prompt, engine, scope, post-processing.

This is the path both `codetailor complete` and the server take. It needs a
tokenizer (anything with `encode`/`decode`, e.g. a transformers tokenizer) and
an `Engine`, but imports neither torch nor pygls.

The prompt's layout (the window, its token budget, the whitespace held back
from its end) is `lsp_server.completion.window`'s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from lsp_server.completion.explain import end_at_boundary
from lsp_server.completion.generation import Generation, GenerationEngine, StopPredicate
from lsp_server.completion.healing import Healed, TokenHealer
from lsp_server.completion.languages import language_for
from lsp_server.completion.postprocess import RULES, postprocess
from lsp_server.completion.prompt import PromptFormat, Snippet
from lsp_server.completion.scope import Mode, Scope, decide_scope
from lsp_server.completion.window import PromptWindow, rejoin_held_whitespace

# Scope decisions and post-processing look at most this far from the cursor
# (tree-sitter parses up to 512 KB; scanning a 4 MB line in Python takes seconds).
NEAR_CHARS = 64 * 1024
# Warming prefills in smaller chunks than a request, so that a request arriving
# meanwhile waits for at most one of them (~0.25 s on a CPU for SmolLM2-135M).
WARM_CHUNK = 64


@dataclass(frozen=True)
class Completion:
    """A finished completion, with the prompt and the engine's counts behind it."""

    text: str
    prompt: str
    scope: Scope
    generation: Generation
    raw: str = ""  # what the model generated after the cursor, before post-processing
    context: tuple[Snippet, ...] = field(default_factory=tuple)  # snippets in the prompt
    # The text before `explain.end_at_boundary` cut a budget-cut block back; "" when uncut.
    cut_from: str = ""

    @property
    def stop_reason(self) -> str:
        """Why generation stopped (see engine.Generation)."""
        return self.generation.stop_reason

    def as_dict(self) -> dict[str, Any]:
        g = self.generation
        return {
            "text": self.text,
            "latency_ms": round(g.latency_ms, 1),
            "prefill_ms": round(g.prefill_ms, 1),
            "decode_ms": round(g.decode_ms, 1),
            "prompt_tokens": g.prompt_tokens,
            "cached_tokens": g.cached_tokens,
            "generated_tokens": g.generated_tokens,
            "stop_reason": g.stop_reason,
            "forwards": g.forwards,
            "tokens_per_forward": round(g.tokens_per_forward, 3),
            "drafted_tokens": g.drafted,
            "accepted_tokens": g.accepted,
            "multiline": self.scope.multiline,
            "scope": self.scope.reason,
            "raw": self.raw,
            "context_files": [c.path for c in self.context],
            "cut_at_boundary": bool(self.cut_from),
        }


class Completer:
    """Completes a document at a cursor with one model, one prompt format and one engine."""

    def __init__(
        self,
        engine: GenerationEngine,
        tokenizer: Any,
        prompt_format: PromptFormat,
        *,
        window_tokens: int = 1024,
        suffix_tokens: int = 256,
        context_tokens: int | None = None,
        rules: Collection[str] = RULES,
        repo: str | None = None,
        token_healing: bool = True,
        window_limit: Callable[[float | None], int] | None = None,
    ) -> None:
        """`context_tokens` defaults to a quarter of the window; `rules` are the
        post-processing rules to apply (all by default); `repo` names the
        repository in formats that take it (Qwen2.5-Coder, StarCoder2);
        `token_healing` regenerates the prompt's last token (see healing.py);
        `window_limit(prefill_budget)` may narrow the window for one request (a
        remote engine's: the prompt its prefill fits within the first-token bound)."""
        self.engine = engine
        self.tokenizer = tokenizer
        self.window = PromptWindow(
            tokenizer,
            prompt_format,
            window_tokens=window_tokens,
            suffix_tokens=suffix_tokens,
            context_tokens=context_tokens,
            repo=repo,
        )
        self.rules = frozenset(rules)
        self._stop_ids = self._token_ids(prompt_format.stop_tokens)
        self._healer = TokenHealer(tokenizer) if token_healing else None
        self.window_limit = window_limit
        # The last generation's tokens: drafts for the next one, which is most
        # often at the same place (the user typed on). Speed only, never output.
        self._last_tokens: list[int] = []

    def _token_ids(self, tokens: tuple[str, ...]) -> set[int]:
        vocab = self.tokenizer.get_vocab()
        return {vocab[t] for t in tokens if t in vocab}

    def _hint_ids(self, hint: str | None) -> list[int]:
        """Tokens to draft from: the suggestion shown last here, then the last generation."""
        shown = self.tokenizer.encode(hint, add_special_tokens=False) if hint else []
        return shown + self._last_tokens

    # The prompt's facts, as the feedback log records them.
    @property
    def format(self) -> PromptFormat:
        return self.window.format

    @property
    def window_tokens(self) -> int:
        return self.window.window_tokens

    @property
    def repo(self) -> str | None:
        return self.window.repo

    def prompt_for(
        self,
        prefix: str,
        suffix: str,
        *,
        path: str | None = None,
        context: Sequence[Snippet] = (),
    ) -> str:
        """The exact prompt text the model sees for this cursor."""
        return self.window.prompt_for(prefix, suffix, path=path, context=context)

    def _encode(self, prompt: str) -> Healed:
        """The prompt's token ids as the engine gets them (healed: see healing.py)."""
        ids = self.tokenizer.encode(prompt, add_special_tokens=False)
        if not ids:  # an empty document: start from the model's BOS or EOS
            bos = self.tokenizer.bos_token_id
            ids = [bos if bos is not None else self.tokenizer.eos_token_id]
        return self._healer.heal(ids) if self._healer else Healed(ids)

    def prompt_ids(
        self,
        text: str,
        offset: int,
        *,
        path: str | None = None,
        context: Sequence[Snippet] = (),
    ) -> list[int]:
        """The token ids `complete` feeds the engine at this cursor, without generating."""
        prompt = self.window.layout(text[:offset], text[offset:], path, context).prompt
        return self._encode(prompt).ids

    def warm(
        self,
        text: str,
        offset: int,
        *,
        path: str | None = None,
        context: Sequence[Snippet] = (),
        cancel: threading.Event | None = None,
    ) -> int:
        """Prefill the prompt for this cursor into the engine's cache; returns the tokens computed.

        A request at this cursor, or later on the same window (the user types
        on), then finds its prompt cached up to the cursor. Yields to `cancel`
        between chunks of WARM_CHUNK tokens, keeping what it computed.
        """
        ids = self.prompt_ids(text, offset, path=path, context=context)
        return self.engine.prefill(ids, cancel, chunk=WARM_CHUNK)

    def _continuation(self, healed: Healed, held: str) -> Callable[[Sequence[int]], str]:
        """What generated tokens add at the cursor: decoded, less the prompt's own last
        token where it was regenerated (healing), with the held-back whitespace rejoined."""

        def continuation(tokens: Sequence[int]) -> str:
            text = self.tokenizer.decode(tokens)
            if healed.tail and text.startswith(healed.tail):
                text = text[len(healed.tail) :]
            return rejoin_held_whitespace(text, held)

        return continuation

    def _stop_rule(
        self, continuation: Callable[[Sequence[int]], str], scope: Scope
    ) -> StopPredicate:
        """Stop at a stop token, or (rule "scope") where the scope's text ends."""
        stop_ids = self._stop_ids
        use_scope = "scope" in self.rules

        def stop(tokens: Sequence[int]) -> bool:
            if tokens[-1] in stop_ids:
                return True
            return use_scope and scope.should_stop(continuation(tokens))

        return stop

    def _generate(
        self,
        healed: Healed,
        stop: StopPredicate,
        budgets: tuple[int, float | None, float | None],
        cancel: threading.Event | None,
        hint: str | None,
    ) -> Generation:
        """One engine call for a healed prompt: `budgets` are (max tokens, decode s,
        prefill s); the tokens it made become the next call's drafts."""
        max_tokens, time_budget, prefill_budget = budgets
        now = time.monotonic()
        generation = self.engine.generate(
            healed.ids,
            # The healed token re-types prompt text: it does not count against the budget.
            max_new_tokens=max_tokens + (1 if healed.tail else 0),
            stop=stop,
            deadline=now + time_budget if time_budget else None,
            cancel=cancel,
            first_allowed=healed.allowed,
            hint=self._hint_ids(hint),
            prefill_deadline=now + prefill_budget if prefill_budget else None,
        )
        if generation.tokens:
            self._last_tokens = list(generation.tokens)
        return generation

    def complete(
        self,
        text: str,
        offset: int,
        *,
        max_tokens: int = 64,
        mode: Mode = "auto",
        time_budget: float | None = None,
        cancel: threading.Event | None = None,
        path: str | None = None,
        context: Sequence[Snippet] = (),
        language_id: str | None = None,
        hint: str | None = None,
        prefill_budget: float | None = None,
    ) -> Completion:
        """Complete `text` at character `offset` (0 <= offset <= len(text)).

        `time_budget` (s) bounds decoding, from the end of prefill;
        `prefill_budget` (s) gives up on a longer prefill (what it did stays
        cached). `hint`, the suggestion shown last here, only speeds decoding.

        `path` is the document's workspace-relative path: it picks the language
        (tree-sitter scope decisions, comment syntax) and heads the file in the
        prompt. `context` holds snippets of other files, best first (e.g. from
        `ContextIndex.query`); those that fit the context budget join the prompt.
        `language_id` (the LSP languageId) names the language where the path
        does not.
        """
        if not 0 <= offset <= len(text):
            raise ValueError(f"offset {offset} is outside the document (0..{len(text)})")
        # The prompt's window is cut from the whole prefix (its start moves in steps of
        # document lines); scope and post-processing look only at text near the cursor.
        limit = self.window_limit(prefill_budget) if self.window_limit else None
        prompt, snippets, held = self.window.layout(
            text[:offset], text[offset:], path, context, window_tokens=limit
        )
        prefix = text[max(offset - NEAR_CHARS, 0) : offset]
        suffix = text[offset : offset + NEAR_CHARS]
        language = language_for(path, language_id) if path or language_id else None
        scope = decide_scope(prefix, suffix, mode, language=language)
        healed = self._encode(prompt)
        continuation = self._continuation(healed, held)
        budgets = (max_tokens, time_budget, prefill_budget)
        generation = self._generate(
            healed, self._stop_rule(continuation, scope), budgets, cancel, hint
        )
        raw = continuation([t for t in generation.tokens if t not in self._stop_ids])
        completion, cut = self._finish(raw, prefix, suffix, scope, generation.stop_reason)
        return Completion(completion, prompt, scope, generation, raw, tuple(snippets), cut)

    def _finish(
        self, raw: str, prefix: str, suffix: str, scope: Scope, stop_reason: str
    ) -> tuple[str, str]:
        """The completion to show, and what it was before a cut at a syntactic boundary
        ("" if none): a block the token budget cut ends at a whole statement."""
        if stop_reason == "cancelled":
            return "", ""
        completion = postprocess(raw, prefix, suffix, scope, rules=self.rules)
        if stop_reason == "max_tokens" and scope.multiline and "scope" in self.rules:
            bounded = end_at_boundary(completion)
            if bounded != completion:
                return bounded, completion
        return completion, ""
