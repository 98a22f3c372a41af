"""Token healing: regenerate the prompt's last token instead of continuing after it.

A prompt cut at the cursor often ends in a token the model rarely saw at that
place: a bare newline where training text had newline-plus-indentation merged
into one token, or `pa` where the code always had `path`. The model then
continues from an unusual state (SmolLM2 starts a comment at column 0, or
stops). Healing removes that last token and lets the model choose the first
new token among those whose text begins with the removed text; the removed
text is then cut from the front of the completion.

Pure: works with any tokenizer that has `batch_decode` and `all_special_ids`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Healed:
    """The prompt without its last token, the text that token held, and what may replace it."""

    ids: list[int]
    tail: str = ""
    allowed: list[int] | None = None


class TokenHealer:
    """Finds, for a token's text, every vocabulary token that starts with it."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._texts: list[str] | None = None  # by token id, built on first use
        self._sorted: list[tuple[str, int]] = []
        self._keys: list[str] = []

    def _index(self) -> list[str]:
        if self._texts is None:
            try:
                size = len(self._tokenizer)
                texts = self._tokenizer.batch_decode([[i] for i in range(size)])
            except (TypeError, AttributeError):  # a tokenizer without a listable vocabulary
                texts = []
            special = set(getattr(self._tokenizer, "all_special_ids", []))
            self._sorted = sorted(
                (text, i)
                for i, text in enumerate(texts)
                if i not in special and text and "\ufffd" not in text
            )
            self._keys = [text for text, _ in self._sorted]
            self._texts = texts
        return self._texts

    def extensions(self, text: str) -> list[int]:
        """Ids of the tokens whose text starts with `text` (including `text` itself)."""
        self._index()
        lo = bisect.bisect_left(self._keys, text)
        hi = bisect.bisect_left(self._keys, text + "\U0010ffff")
        return [i for _, i in self._sorted[lo:hi]]

    def heal(self, ids: list[int]) -> Healed:
        """Drop the last token when other tokens extend its text; otherwise keep the prompt."""
        if len(ids) < 2:
            return Healed(list(ids))
        texts = self._index()
        last = ids[-1]
        tail = texts[last] if last < len(texts) else ""
        if not tail or "\ufffd" in tail:
            return Healed(list(ids))
        allowed = self.extensions(tail)
        if len(allowed) <= 1:  # nothing but the token itself: healing would change nothing
            return Healed(list(ids))
        return Healed(list(ids[:-1]), tail, allowed)
