"""A user typing a file, as a list of edits with a completion request after each word.

Pure: no LSP, no model. The replay starts from the file cut at a line boundary
and types the next part of it word by word (a word and the whitespace after it);
everything after the typed part stays in the document as the suffix, except
the rest of the last typed word's line: the user writes new code at the end of
a line, with nothing right of the cursor (text there would make the server
decline every request as `no_help`, and the replay would time nothing).

What such a user takes of a suggestion (`accepted_text`, the simulated user's rule,
which every benchmark of this package judges suggestions by) is judged against what
the file says from the cursor on (`Replay.truths`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A word as the typist types it: a run of non-blanks and the blanks after it (or blanks alone).
WORD = re.compile(r"\S+\s*|\s+")


# The least a user takes of a suggestion: fewer non-blank characters are not worth a key.
MIN_CHARS = 4


def accepted_text(suggestion: str, truth: str, min_chars: int = MIN_CHARS) -> str:
    """What a user who knows `truth` (the file from the cursor on) takes of `suggestion`:
    all of it when it all matches, else its longest whole-word start that matches; "" when
    that is shorter than `min_chars` non-blank characters."""
    body = suggestion.rstrip()
    n = 0
    while n < len(body) and n < len(truth) and body[n] == truth[n]:
        n += 1
    # Back off to a word boundary in both the suggestion and the file.
    while n > 0 and (_inside_word(body, n) or _inside_word(truth, n)):
        n -= 1
    take = body[:n].rstrip()
    return take if len(take.strip()) >= min_chars else ""


def _inside_word(text: str, n: int) -> bool:
    """Whether position n cuts a word of `text` in two."""
    return (
        0 < n < len(text)
        and (text[n - 1].isalnum() or text[n - 1] == "_")
        and (text[n].isalnum() or text[n] == "_")
    )


def line_end(source: str, offset: int) -> int:
    """The offset just after the end of the line that `offset` is on (the file's end if none)."""
    end = source.find("\n", offset)
    return len(source) if end == -1 else end + 1


@dataclass(frozen=True)
class Step:
    """Insert `typed` at character `offset`; then the cursor stands at `offset + len(typed)`."""

    offset: int
    typed: str

    @property
    def cursor(self) -> int:
        return self.offset + len(self.typed)


@dataclass(frozen=True)
class Replay:
    path: str
    initial: str  # the document when it is opened
    steps: list[Step]
    after: str = ""  # what the file says after the last typed word

    def documents(self) -> list[tuple[str, int]]:
        """The document text and cursor after each step."""
        text, out = self.initial, []
        for step in self.steps:
            text = text[: step.offset] + step.typed + text[step.offset :]
            out.append((text, step.cursor))
        return out

    def truths(self) -> list[str]:
        """What the file says from the cursor on after each step: the words still to be
        typed, then the rest of the file (what a suggestion there is judged against)."""
        out, rest = [], self.after
        for step in reversed(self.steps):
            out.append(rest)
            rest = step.typed + rest
        return out[::-1]


def typing_replay(path: str, source: str, *, start: float = 0.5, max_steps: int = 40) -> Replay:
    """Type `max_steps` words of `source` from the first line boundary after `start` (0..1);
    the rest of the line the last word ends on is not in the document."""
    begin = line_end(source, int(len(source) * start))
    words = WORD.findall(source[begin:])[:max_steps]
    end = begin + sum(len(w) for w in words)
    rest = source.find("\n", end)
    rest = len(source) if rest == -1 else rest
    steps, offset = [], begin
    for word in words:
        steps.append(Step(offset, word))
        offset += len(word)
    return Replay(path, source[:begin] + source[rest:], steps, source[end:])
