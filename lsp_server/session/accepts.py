"""Which shown suggestions an acceptance may still count for: each one once.

Pure (no pygls, no torch). Every suggestion shown gets an id (the feedback
log's where it records, a fresh one where it does not), and the item's
`codetailor.accepted` command carries it back. `AcceptLedger.accept(id)` is
true only the first time for an id that was shown, so a client that repeats
the command, or sends ids it made up, cannot raise the acceptance count
(issue 28: 5,000 accepts counted for 4 suggestions shown).
"""

from __future__ import annotations

import uuid
from collections import OrderedDict

REMEMBER = 512  # ids of recent suggestions that an acceptance may name


class AcceptLedger:
    """Recent shown suggestion ids, and whether each has been accepted."""

    def __init__(self, remember: int = REMEMBER) -> None:
        self.remember = remember
        self._ids: OrderedDict[str, bool] = OrderedDict()  # id -> accepted

    def shown(self, id: str | None = None) -> str:
        """Note a suggestion shown under `id` (None: a new id); its id."""
        id = id or uuid.uuid4().hex[:16]
        self._ids[id] = False
        self._ids.move_to_end(id)
        while len(self._ids) > self.remember:
            self._ids.popitem(last=False)
        return id

    def accept(self, id: object) -> bool:
        """True the first time `id` names a suggestion shown and not yet accepted."""
        if not isinstance(id, str) or self._ids.get(id, True):
            return False
        self._ids[id] = True
        return True
