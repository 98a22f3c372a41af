"""The simulated user's decisions offline, at fixed places: a paired test of two adapters.

Two `bench simulate` runs drift apart after the first suggestion that one takes
and the other does not, so their acceptance rates are not paired. Here the places
are fixed: every place where a simulated user who takes nothing asks (the start
of the typed part of each file and after each of its words). The document at a
place is the same whatever was taken before, since what is taken is the file's
own text; a user who takes suggestions skips some of these places and also asks
after each take (which may end before a word's space). At each place,
the model completes greedily through the server's own `Completer` (line mode, no
context, as `bench simulate` sets the server), and the user's rule
(`accepted_text`) decides against what the file says from there. Two adapters
are compared place by place: the places only one of them gets accepted are the
evidence, judged by an exact two-sided sign test.

Unlike the server, nothing is served from an earlier suggestion (typing-through)
and there is no time budget: each place is one fresh generation.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lsp_server.measure.replay import WORD, accepted_text
from lsp_server.measure.simulated_user import UserSetup, document_at, typed_part


@dataclass(frozen=True)
class Offered:
    """What the model offered at a place, with its per-token log-probabilities and
    entropies (empty where the engine cannot tell)."""

    text: str
    logprobs: Sequence[float] = ()
    entropies: Sequence[float] = ()


@dataclass(frozen=True)
class Place:
    """A document with the cursor at `offset`, and what the file says from there to the end
    of the typed part."""

    path: str
    text: str
    offset: int
    truth: str


def typing_places(files: Sequence[tuple[str, str]], setup: UserSetup) -> list[Place]:
    """Where the simulated user of `setup` asks in `files` (path, text) when it takes nothing."""
    places = []
    for path, source in files:
        begin, end = typed_part(source, setup)
        cursor = begin
        for word in WORD.findall(source[begin:end]):
            places.append(Place(path, document_at(source, cursor, end), cursor, source[cursor:end]))
            cursor += len(word)
    return places


def takes(
    places: Sequence[Place],
    complete: Callable[[Place], str],
    min_chars: int,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """What the user takes at each place of `complete(place)`'s suggestion ("" for nothing)."""
    taken = []
    for place in places:
        taken.append(accepted_text(complete(place), place.truth, min_chars))
        if progress:
            progress(1)
    return taken


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided sign test: how likely a split at least this uneven is, were each
    discordant place a fair coin."""
    n, k = wins + losses, min(wins, losses)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired(before: Sequence[str], after: Sequence[str]) -> dict[str, Any]:
    """Place by place, what `before` and `after` (the takes at the same places) had accepted."""
    if len(before) != len(after):
        raise ValueError("paired takes must be at the same places")
    only_after = sum(bool(a) and not b for b, a in zip(before, after, strict=True))
    only_before = sum(bool(b) and not a for b, a in zip(before, after, strict=True))
    return {
        "places": len(before),
        "both": sum(bool(b) and bool(a) for b, a in zip(before, after, strict=True)),
        "only_before": only_before,
        "only_after": only_after,
        "sign_test_p": round(sign_test(only_after, only_before), 4),
    }


def summary(places: Sequence[Place], taken: Sequence[str]) -> dict[str, Any]:
    """Accepted places, taken whole or in part, and the characters taken."""
    return {
        "places": len(places),
        "accepted": sum(bool(t) for t in taken),
        "accepted_chars": sum(len(t) for t in taken),
    }


def run_offline(
    files: Sequence[tuple[str, str]],
    *,
    model: str,
    adapter: str | None,
    against: str | None,
    setup: UserSetup,
    max_tokens: int,
    keep_takes: bool = False,
    then: Callable[[Sequence[Place], Sequence[Offered]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`adapter` at the places of `files`, and `against` (if given; "base": the bare model)
    at the same places, compared place by place (`against` as before, `adapter` as after).
    With `keep_takes` the report also lists the places (path, offset) and, for each side,
    what was taken at each, so runs made apart can be paired later (`paired`). With
    `then` (and no `against`), the report also holds what `then` makes of the places and
    what `adapter` offered at each (the show-or-stay-quiet arms: quiet_offline.py)."""
    from tqdm import tqdm

    from lsp_server.model.factory import load_completers
    from lsp_server.model.registry import adapter_ref
    from lsp_server.spec import ModelSpec

    places = typing_places(files, setup)
    report: dict[str, Any] = {"words_per_file": setup.words_per_file, "files": len(files)}
    runs = (
        [("adapter", adapter)] if against is None else [("against", against), ("adapter", adapter)]
    )
    taken: dict[str, list[str]] = {}
    offered: list[Offered] = []
    for label, which in runs:
        spec = ModelSpec(model=model, dtype=setup.dtype or "auto")
        held = load_completers(spec, [None if which in (None, "base") else adapter_ref(which)])
        loaded, completer = held.model, held.completer

        kept = offered if label == "adapter" else None
        complete = _completing(completer, max_tokens, kept)
        with tqdm(total=len(places), desc=f"offline {label}", unit="place", file=sys.stderr) as bar:
            taken[label] = takes(places, complete, setup.min_chars, progress=bar.update)
        report[label] = summary(places, taken[label]) | {"name": which, "dtype": loaded.dtype}
        if keep_takes:
            report[label]["taken"] = taken[label]
    if keep_takes:
        report["places"] = [[p.path, p.offset] for p in places]
    if against is not None:
        report["paired"] = paired(taken["against"], taken["adapter"])
    elif then is not None:
        report |= then(places, offered)
    return report


def _completing(
    completer: Any, max_tokens: int, offered: list[Offered] | None
) -> Callable[[Place], str]:
    """`completer`'s suggestion at a place (line mode, no context, as `bench simulate`
    sets the server); with `offered`, each one is also kept there with its confidence."""
    from lsp_server.completion.languages import language_for
    from lsp_server.session.documents import prompt_safe
    from lsp_server.session.quiet import confidence

    def complete(place: Place) -> str:
        completion = completer.complete(
            prompt_safe(place.text),
            place.offset,
            max_tokens=max_tokens,
            mode="line",
            path=place.path,
            language_id=language_for(place.path).name,
        )
        if offered is not None:
            logprobs, entropies = confidence(completion)
            offered.append(Offered(completion.text, logprobs, entropies))
        return str(completion.text)

    return complete
