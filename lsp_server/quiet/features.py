"""What the show-or-stay-quiet filter looks at: features that cost nothing at serving time.

`features(...)` turns one suggestion in its place into a fixed vector of floats, named by
`FEATURES` (the order the stored filter's coefficients follow). Everything it reads is
already in hand when the model has answered: the suggestion, a little text each side of
the cursor, the document's language, the model's own per-token log-probabilities and
entropies (`Generation.logprobs`/`.entropies`; empty when the engine cannot tell, and
then `confident` is 0 and the five confidence features are 0), and what the user did with
the last suggestions (`History`). It reads at most `LOOK_BACK` characters before the
cursor and `LOOK_AHEAD` after it, so a long document costs the same as a short one.

The server computes them per request and logs them with the decision; `feedback learn`
rebuilds them from an older log's `shown` events with the same function, folding the
log's outcomes through the same `History`. Pure: no I/O, no pygls, no torch.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Sequence

LOOK_BACK = 2000  # characters before the cursor the features read
LOOK_AHEAD = 200  # characters after it
MIN_TAKE = 4  # non-blank characters: less than this is nothing worth a Tab
RECENT = 10  # suggestions the session's recent acceptance counts
PRIOR_RATE = 0.25  # the acceptance a rate starts from before any outcome (Cursor's break-even)
PRIOR_WEIGHT = 4.0  # how many suggestions that prior is worth
PROSE = frozenset({"markdown", "plaintext", "restructuredtext", "rst", "text", "latex"})
CONFIG = frozenset({"yaml", "toml", "json", "jsonc", "ini", "xml", "properties", "dockercompose"})
_WORD = re.compile(r"\w+")
_CLOSING = re.compile(r"[\s)\]}>,;:'\"`]*")
_OPENERS = "([{,=:"
_COMMENT = ("#", "//", "--", ";", "/*", "*", "<!--")

FEATURES: tuple[str, ...] = (
    "chars",  # log(1 + non-blank characters of the suggestion)
    "words",  # log(1 + its words)
    "lines",  # its lines, at most 8
    "short",  # 1: fewer than MIN_TAKE non-blank characters
    "closing_only",  # 1: nothing but closing brackets, quotes and separators
    "alnum_share",  # share of letters and digits among its non-blank characters
    "repeats_above",  # 1: its first line is one of the 5 lines above the cursor
    "in_prefix",  # 1: its first line (4+ characters) stands somewhere before the cursor
    "line_start",  # 1: only indentation before the cursor on its line
    "line_chars",  # log(1 + non-blank characters before the cursor on its line)
    "indent",  # the line's indentation, in levels of 4 columns, at most 8
    "after_opener",  # 1: the last non-blank character before the cursor opens or separates
    "after_dot",  # 1: the cursor follows a dot
    "in_comment",  # 1: the line before the cursor starts a comment
    "in_string",  # 1: an odd number of quotes before the cursor on its line
    "suffix_chars",  # log(1 + non-blank characters right of the cursor on its line)
    "prose",  # 1: a prose language (Markdown, reStructuredText, plain text)
    "config",  # 1: a configuration language (YAML, TOML, JSON, INI)
    "recent_rate",  # the session's acceptance over its last RECENT suggestions, with a prior
    "file_rate",  # the same for this document
    "since_accept",  # log(1 + suggestions shown since the session's last acceptance)
    "confident",  # 1: the engine gave per-token log-probabilities
    "mean_logprob",  # their mean over the generated tokens
    "min_logprob",  # the lowest one
    "first_logprob",  # the first token's
    "mean_entropy",  # the mean entropy of the next-token distributions
    "max_entropy",  # the highest one
)


class History:
    """What became of the last suggestions shown: the session's, each document's, and how
    many since the last acceptance. Told `shown(uri, id)` for each suggestion shown and
    `accepted(id)` when one is taken; a suggestion not taken counts as rejected once the
    next one in its document is shown. The server and `feedback learn` (folding the log)
    feed it the same way, so a feature means the same at both ends."""

    def __init__(self) -> None:
        self.recent: deque[bool] = deque(maxlen=RECENT)
        self.per_file: dict[str, deque[bool]] = {}
        self.since_accept = 0
        self._open: dict[str, str] = {}  # uri -> id of the last suggestion shown there, unsettled

    def shown(self, uri: str, id: str) -> None:
        """Suggestion `id` is shown in `uri`: the one shown there before it was rejected,
        unless it was accepted."""
        if uri in self._open:
            self._settle(uri, False)
        self._open[uri] = id
        if len(self._open) > 256:  # documents long closed
            self._open.pop(next(iter(self._open)))

    def accepted(self, id: str) -> None:
        """Suggestion `id` was accepted (a second acceptance of it changes nothing)."""
        for uri, open_id in list(self._open.items()):
            if open_id == id:
                self._settle(uri, True)

    def _settle(self, uri: str, accepted: bool) -> None:
        del self._open[uri]
        self.recent.append(accepted)
        self.per_file.setdefault(uri, deque(maxlen=RECENT)).append(accepted)
        if len(self.per_file) > 256:
            self.per_file.pop(next(iter(self.per_file)))
        self.since_accept = 0 if accepted else self.since_accept + 1

    def rates(self, uri: str) -> tuple[float, float, float]:
        """(recent_rate, file_rate, since_accept) as the features hold them."""
        file = self.per_file.get(uri, ())
        return _rate(self.recent), _rate(file), math.log1p(min(self.since_accept, 50))


def _rate(outcomes: Sequence[bool] | deque[bool]) -> float:
    return (sum(outcomes) + PRIOR_RATE * PRIOR_WEIGHT) / (len(outcomes) + PRIOR_WEIGHT)


def features(
    before: str,
    after: str,
    suggestion: str,
    language: str | None,
    *,
    history: tuple[float, float, float] = (PRIOR_RATE, PRIOR_RATE, 0.0),
    logprobs: Sequence[float] = (),
    entropies: Sequence[float] = (),
) -> list[float]:
    """The feature vector (in `FEATURES` order) of `suggestion` shown with `before` left and
    `after` right of the cursor (only their last LOOK_BACK / first LOOK_AHEAD characters are
    read); `history` is `History.rates(uri)`."""
    before, after = before[-LOOK_BACK:], after[:LOOK_AHEAD]
    body = suggestion.strip()
    solid = "".join(body.split())
    first = body.split("\n", 1)[0].strip()
    line = before.rsplit("\n", 1)[-1]
    above = [x.strip() for x in before.split("\n")[-6:-1]]
    last = line.rstrip()[-1:] if line.strip() else ""
    lang = (language or "").lower()
    return [
        math.log1p(len(solid)),
        math.log1p(len(_WORD.findall(body))),
        float(min(body.count("\n") + 1 if body else 0, 8)),
        float(len(solid) < MIN_TAKE),
        float(bool(body) and _CLOSING.fullmatch(body) is not None),
        sum(c.isalnum() for c in solid) / len(solid) if solid else 0.0,
        float(bool(first) and first in above),
        float(len(first) >= MIN_TAKE and first in before),
        float(not line.strip()),
        math.log1p(len(line.strip())),
        min((len(line) - len(line.lstrip())) / 4, 8.0),
        float(bool(last) and last in _OPENERS),
        float(last == "."),
        float(line.lstrip().startswith(_COMMENT)),
        float((line.count('"') + line.count("'")) % 2 == 1),
        math.log1p(len(after.split("\n", 1)[0].strip())),
        float(lang in PROSE),
        float(lang in CONFIG),
        *history,
        *_confidence(logprobs, entropies),
    ]


def _confidence(logprobs: Sequence[float], entropies: Sequence[float]) -> list[float]:
    """confident, mean/min/first log-probability, mean/max entropy (all 0 when unknown)."""
    if not logprobs:
        return [0.0] * 6
    known = entropies or [0.0]
    return [
        1.0,
        sum(logprobs) / len(logprobs),
        min(logprobs),
        float(logprobs[0]),
        sum(known) / len(known),
        max(known),
    ]
