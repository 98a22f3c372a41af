"""What `codetailor.status` counts of a session's answers, and why an answer was empty.

The session counts its requests and what became of them (`counts`: requests,
shown, typed through, accepted...) and each empty answer once, under its reason
(`empty`, keyed by one of `EMPTY_REASONS`); `counts_status` is how both appear
in the status. Pure: no pygls, no torch.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

# Why a request was answered with nothing; `codetailor.status` counts each one, once,
# under its reason (`emptyAnswers`).
EMPTY_REASONS = (
    "unknown_document",  # the document is not open
    "disabled",  # the `enable` setting is off
    "binary",  # the document looks binary
    "not_ready",  # no model loaded, or still loading after ready_wait_s (READY_WAIT_S)
    "no_help",  # too much text right of the cursor on its line for a completion to help
    "superseded",  # a newer request for the same document took over
    "queue_full",  # too many requests waited for the model: the oldest was dropped
    "stale",  # the document changed while the model ran
    "closed",  # the document was closed while the model ran
    "settings",  # new settings (another model, or disabled) stopped it
    "disconnected",  # the client went away
    "cancelled",  # $/cancelRequest (answered with an error, not an empty list)
    "failed",  # the generation raised
    "time_budget",  # `timeBudgetMs` ran out before the model produced anything
    "first_token_timeout",  # no first token within `firstTokenTimeoutMs` (the prefill)
    "engine_error",  # the remote engine failed, or is backed off after failing
    "empty_generation",  # the model ran and had nothing to offer
    "quiet",  # the show-or-stay-quiet filter judged the suggestion unlikely to be accepted
)
# The reasons an answer the model was asked for is dropped rather than shown; the
# status' `counts.dropped` is their sum.
DROPPED_REASONS = ("superseded", "queue_full", "stale", "closed", "settings", "disconnected")
# The empty answer's reason for a generation's stop reason (else "empty_generation").
EMPTY_FOR_STOP = {
    "time": "time_budget",
    "first_token": "first_token_timeout",
    "error": "engine_error",
}


def counts_status(counts: Counter[str], empty: Counter[str]) -> dict[str, Any]:
    """The status' `counts` (with `dropped`: the answers the model was asked for and that
    were not shown, each also an empty answer under its reason), `acceptanceRate` and
    `emptyAnswers` (every reason, zero or not)."""
    shown, accepted = counts["shown"], counts["accepted"]
    return {
        "counts": dict(counts) | {"dropped": sum(empty[r] for r in DROPPED_REASONS)},
        "acceptanceRate": round(accepted / shown, 3) if shown else None,
        "emptyAnswers": {reason: empty[reason] for reason in EMPTY_REASONS},
    }
