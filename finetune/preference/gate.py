"""The gate: whether a tuned adapter may replace the one the user has.

It compares the figures measured before and after tuning. The adapter is kept only
if it is no worse a model of the repository's code (held-out loss, within
`loss_tolerance`, and next-line exact match on the held-out files, as
finetune/repo_eval.py measures them) and ranks the held-out feedback better
(preference accuracy: kept suggestions above rejected ones by implicit reward).
Preferences can be learned while the code is forgotten, so both sides are checked;
a refusal names every check that failed, so the user knows why nothing changed.
"""

from __future__ import annotations

from typing import Any


def gate(
    before: dict[str, Any], after: dict[str, Any], loss_tolerance: float = 0.0
) -> tuple[bool, list[str]]:
    """Keep the new adapter? (yes or no, and one reason per failed check)."""
    reasons = []
    lb, la = before.get("heldout_loss"), after.get("heldout_loss")
    if lb is not None and la is not None and la > lb * (1 + loss_tolerance):
        reasons.append(f"held-out loss rose from {lb:.4f} to {la:.4f}")
    eb, ea = before.get("next_line_exact_match"), after.get("next_line_exact_match")
    if eb is not None and ea is not None and ea < eb:
        reasons.append(f"next-line exact match fell from {eb:.3f} to {ea:.3f}")
    pb, pa = before.get("preference_accuracy"), after.get("preference_accuracy")
    if pa is None:
        reasons.append("no held-out feedback to rank (record more, or lower heldout_feedback)")
    elif pb is not None and pa <= pb:
        reasons.append(f"held-out feedback ranked no better ({pb:.3f} -> {pa:.3f})")
    return not reasons, reasons
