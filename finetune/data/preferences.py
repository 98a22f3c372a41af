"""Preference data from the feedback log: which suggestions were kept, which were not.

A suggestion is *desirable* when it was accepted (in full, in part, or typed
through to its end) and not deleted again by the last retention check; it is
*undesirable* when it was superseded, dismissed or ignored, or accepted and
then deleted. Pairs for DPO come from two sources:

- what the user typed at the place of a suggestion (the log's `typed` event:
  the line as the user finished it) is preferred to the suggestion, unless it
  begins with the whole suggestion or the suggestion was accepted in full and
  kept; so an ignored suggestion, one taken only in part, and one deleted again
  each lose to what the user wrote there instead;
- at one place (the same file and the same text before the cursor) a
  desirable suggestion is preferred to an undesirable one.

A desirable suggestion with no pair, and an undesirable one with neither,
stays unpaired, with its label, for a KTO-style loss.

Each example's prompt is rebuilt from the log exactly as the server built it,
through the same `PromptWindow.prompt_for` (same format, window, path, snippets).
Pure: no torch.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from lsp_server.completion.prompt import Snippet
from lsp_server.completion.window import held_whitespace
from lsp_server.feedback import SuggestionRecord

# Of one place, at most this many pairs (kept x rejected), so one busy line does not dominate.
PAIRS_PER_PLACE = 4
PLACE_CHARS = 400


@dataclass(frozen=True)
class PreferenceExample:
    """One suggestion as training data: the prompt, what the model wrote, and the verdict."""

    id: str
    prompt: str
    completion: str
    desirable: bool
    place: str


@dataclass
class PreferenceData:
    pairs: list[tuple[PreferenceExample, PreferenceExample]] = field(default_factory=list)
    unpaired: list[PreferenceExample] = field(default_factory=list)

    @property
    def examples(self) -> list[PreferenceExample]:
        """Every example once (pair members first)."""
        seen: dict[str, PreferenceExample] = {}
        for chosen, rejected in self.pairs:
            seen.setdefault(chosen.id, chosen)
            seen.setdefault(rejected.id, rejected)
        for e in self.unpaired:
            seen.setdefault(e.id, e)
        return list(seen.values())

    def counts(self) -> dict[str, int]:
        examples = self.examples
        return {
            "pairs": len(self.pairs),
            "unpaired": len(self.unpaired),
            "desirable": sum(e.desirable for e in examples),
            "undesirable": sum(not e.desirable for e in examples),
        }


def verdict(record: SuggestionRecord) -> bool:
    """True for a kept suggestion (or one the user went on to type themselves), False for
    one ignored or deleted again."""
    typed = record.typed
    if typed is not None and typed.rstrip().startswith(record.suggestion.rstrip()):
        return True
    return record.was_accepted and record.was_kept is not False


def typed_instead(record: SuggestionRecord) -> str | None:
    """What the user typed at the place of a suggestion they did not keep whole, when it
    differs from the suggestion (None otherwise)."""
    typed = record.typed
    if typed is None or not typed.strip():
        return None
    if typed.rstrip().startswith(record.suggestion.rstrip()):
        return None
    if "full" in record.accepted and record.was_kept is not False:
        return None
    return typed.rstrip()


def place_of(record: SuggestionRecord) -> str:
    """The file and the text just before the cursor: where the suggestion was made."""
    shown = record.shown
    key = f"{shown.path or shown.uri}\0{shown.prefix[-PLACE_CHARS:]}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


# (prefix, suffix, path, snippets, window tokens or None, repo name or None) -> prompt
PromptBuilder = Callable[[str, str, str | None, list[Snippet], int | None, str | None], str]


def example_of(record: SuggestionRecord, build: PromptBuilder) -> PreferenceExample:
    """The record's prompt rebuilt, and the text the model produced after it.

    The server leaves trailing whitespace of the prefix out of the prompt and
    the model writes it (see `rejoin_held_whitespace`), so it leads the completion.
    """
    s = record.shown
    prefix = s.prefix
    # Lines cut off the stored prefix, so the window's line steps fall where they did.
    padded = "\n" * s.prefix_start_line + prefix
    snippets = [Snippet(p, t) for p, t in s.context]
    prompt = build(padded, s.suffix, s.path, snippets, s.window_tokens, s.repo)
    held = held_whitespace(prefix)
    return PreferenceExample(
        record.id, prompt, held + record.suggestion, verdict(record), place_of(record)
    )


def typed_example(
    record: SuggestionRecord, shown: PreferenceExample, typed: str
) -> PreferenceExample:
    """What the user typed at `record`'s place, as the chosen side of a pair against it."""
    prefix = record.shown.prefix
    held = held_whitespace(prefix)
    return PreferenceExample(f"{record.id}:typed", shown.prompt, held + typed, True, shown.place)


def preference_data(
    records: Sequence[SuggestionRecord], build: PromptBuilder, *, limit: int = PAIRS_PER_PLACE
) -> PreferenceData:
    """Pairs where one place has both verdicts; every other suggestion unpaired."""
    places: dict[str, list[PreferenceExample]] = defaultdict(list)
    data = PreferenceData()
    for record in records:
        if record.suggestion.strip():
            example = example_of(record, build)
            typed = typed_instead(record)
            if typed is None:
                places[example.place].append(example)
            else:
                chosen = typed_example(record, example, typed)
                data.pairs.append((chosen, replace(example, desirable=False)))
    for examples in places.values():
        kept = [e for e in examples if e.desirable]
        rejected = [e for e in examples if not e.desirable and e.completion not in _texts(kept)]
        pairs = [(k, r) for k in kept for r in rejected][:limit]
        data.pairs += pairs
        in_pairs = {e.id for pair in pairs for e in pair}
        data.unpaired += [e for e in examples if e.id not in in_pairs]
    return data


def _texts(examples: Sequence[PreferenceExample]) -> set[str]:
    return {e.completion for e in examples}


def split_by_place(
    records: Sequence[SuggestionRecord], fraction: float, seed: int = 0
) -> tuple[list[SuggestionRecord], list[SuggestionRecord]]:
    """(train, held out): a deterministic share of places, so no place is on both sides."""
    train: list[SuggestionRecord] = []
    held: list[SuggestionRecord] = []
    for record in records:
        digest = hashlib.sha256(f"{seed}:{place_of(record)}".encode()).digest()
        (held if int.from_bytes(digest[:8], "big") / 2**64 < fraction else train).append(record)
    return train, held
