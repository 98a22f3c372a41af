"""Training examples: files cut into documents in the model's prompt format, some
turned into fill-in-the-middle examples, then tokenized and packed.

Every marker and header comes from `lsp_server.completion.prompt`
(`training_document`, `fim_example`), the module the server builds its prompts
with, so the adapter learns exactly the layout it is served with; this module
only decides which text goes where. A prefix-only format gets plain documents.

A FIM example's hole is cut where an editor's cursor asks (`fim_hole`): at a
line's start, after its indentation or inside its text, ending at the end of a
line, with the prefix's trailing whitespace held back as the server holds it
back. Each example stays whole in its row, with the loss on its middle, so the
model always sees the prompt it answers. (Holes at random characters, cut
anywhere by packing, taught SmolLM2 to start its answers mid-word: HumanEval
infill fell from 0.27 to 0.035, docs/benchmarks.md.)
Pure: no torch.
"""

from __future__ import annotations

import hashlib
import random
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from lsp_server.completion.prompt import PromptFormat, fim_example, training_document
from lsp_server.completion.window import held_whitespace

IGNORE = -100  # a label the loss skips (PyTorch's cross-entropy ignore_index)
CHARS_PER_TOKEN = 3  # rough, for code; only used to cut long files into block-sized chunks


def chunks(text: str, max_chars: int) -> list[str]:
    """`text` cut at line ends into pieces of at most `max_chars` (a long line stands alone)."""
    pieces: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        if current and len(current) + len(line) > max_chars:
            pieces.append(current)
            current = ""
        current += line
    if current:
        pieces.append(current)
    return pieces


# Where a FIM example's hole is cut, as an editor's cursor stands when it asks: at a line's
# start, after its indentation, or anywhere in its text; the hole ends at the end of that
# line or of one of the next few (a block).
AT_LINE_START, AFTER_INDENT = 0.5, 0.2  # the rest: inside the line's text
ONE_LINE = 0.6  # the rest: up to MAX_EXTRA_LINES more lines
MAX_EXTRA_LINES = 6
# Context around the hole, in lines (drawn per example, up to the chunk's own ends), so
# the model meets short and long windows.
PREFIX_LINES, SUFFIX_LINES = (2, 24), (0, 12)
NO_PATH = 0.25  # FIM examples without the file's path header (an unsaved buffer, a benchmark)


@dataclass(frozen=True)
class FimText:
    """A fill-in-the-middle example: the server's prompt for a hole, and the middle the
    model should write there (the whitespace the prompt holds back first, as it is served)."""

    prompt: str
    middle: str


@dataclass(frozen=True)
class Texts:
    """Training texts of a set of files: whole documents, packed as one stream with every
    token learned, and FIM examples, each kept whole in a row with the loss on its middle."""

    plain: list[str]
    fim: list[FimText]


def documents(
    fmt: PromptFormat,
    files: Iterable[tuple[str, str]],
    *,
    seq_len: int,
    seed: int = 0,
    header: bool = True,
    fim_rate: float = 0.0,
    spm_rate: float = 0.0,
    holes: int = 1,
) -> Texts:
    """Training texts for (path, text) pairs: for each block-sized chunk of each file,
    `holes` FIM examples (share `fim_rate`, FIM formats only; each hole costs only the
    few lines around it) or the chunk as a document.

    Each chunk draws its FIM choice and hole from its own RNG, seeded by the
    seed, path and chunk number, so adding a file changes no other example.
    """
    plain: list[str] = []
    fim: list[FimText] = []
    for path, text in files:
        shown_path = path if header else None
        for n, piece in enumerate(chunks(text, seq_len * CHARS_PER_TOKEN)):
            rng = random.Random(f"{seed}:{path}:{n}")
            chosen = fmt.is_fim and rng.random() < fim_rate
            cut = [h for _ in range(holes if chosen else 0) if (h := fim_hole(piece, rng))]
            if not cut:
                plain.append(training_document(fmt, piece, path=shown_path))
                continue
            for prefix, middle, suffix in cut:
                spm = rng.random() < spm_rate
                named = shown_path if rng.random() >= NO_PATH else None
                prompt = fim_example(fmt, prefix, "", suffix, spm=spm, path=named)
                fim.append(FimText(prompt, middle))
    return Texts(plain, fim)


def fim_hole(piece: str, rng: random.Random) -> tuple[str, str, str] | None:
    """(prefix, middle, suffix) of `piece` around a hole where an editor's cursor could
    ask for a completion, laid out as the server lays it out: the prefix's trailing
    whitespace moves to the start of the middle (`held_whitespace`). None when the piece
    has no line of code."""
    lines = piece.splitlines(keepends=True)
    code = [i for i, line in enumerate(lines) if line.strip()]
    if not code:
        return None
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    first = rng.choice(code)
    body = lines[first].rstrip("\r\n")
    indent = len(body) - len(body.lstrip())
    draw = rng.random()
    if draw < AT_LINE_START:
        column = 0
    elif draw < AT_LINE_START + AFTER_INDENT:
        column = indent
    else:
        column = rng.randint(indent + 1, len(body.rstrip()))
    last = first if rng.random() < ONE_LINE else first + rng.randint(1, MAX_EXTRA_LINES)
    last = min(last, len(lines) - 1)
    start = starts[first] + column

    def line_end(i: int) -> int:
        return starts[i] + len(lines[i].rstrip("\r\n"))

    # A hole with nothing but whitespace in it (the cursor at a line's end, blank lines
    # below) reaches down to the next line of code.
    while not piece[start : line_end(last)].strip():
        if last + 1 == len(lines):
            return None
        last += 1
    end = line_end(last)
    above = max(0, first - rng.randint(*PREFIX_LINES))
    below = min(len(lines), last + 1 + rng.randint(*SUFFIX_LINES))
    prefix, middle = piece[starts[above] : start], piece[start:end]
    held = held_whitespace(prefix)
    return prefix[: len(prefix) - len(held)], held + middle, piece[end : starts[below]]


@dataclass
class Blocks:
    """Packed sequences; `lengths` counts each row's real (unpadded) ids.

    `labels`, where set, holds each row's targets (-100: no loss there; the prompts of
    next-edit examples), else every real token is learned. Rows may differ in length
    (`to_batch` pads a batch to its longest)."""

    ids: list[list[int]]
    lengths: list[int]
    labels: list[list[int]] | None = None

    @property
    def tokens(self) -> int:
        return sum(self.lengths)

    @property
    def loss_tokens(self) -> int:
        """The tokens the loss is taken on."""
        if self.labels is None:
            return self.tokens
        rows = zip(self.labels, self.lengths, strict=True)
        return sum(sum(1 for t in row[:n] if t != IGNORE) for row, n in rows)

    def __add__(self, other: Blocks) -> Blocks:
        """Both sets of rows, `other`'s after this one's."""
        if self.labels is None and other.labels is None:
            return Blocks(self.ids + other.ids, self.lengths + other.lengths)
        return Blocks(
            self.ids + other.ids,
            self.lengths + other.lengths,
            self.row_labels() + other.row_labels(),
        )

    def row_labels(self) -> list[list[int]]:
        """Each row's targets (the ids themselves where every token is learned)."""
        return self.labels if self.labels is not None else [list(row) for row in self.ids]

    def pick(self, rows: Sequence[int]) -> Blocks:
        labels = None if self.labels is None else [self.labels[i] for i in rows]
        return Blocks([self.ids[i] for i in rows], [self.lengths[i] for i in rows], labels)

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for row in self.ids:
            digest.update(array("q", row).tobytes())
        for row in self.labels or []:
            digest.update(array("q", row).tobytes())
        return digest.hexdigest()[:16]


def tokenize(tokenizer: Any, texts: Sequence[str], eos_id: int) -> list[list[int]]:
    """Token ids of each text as the server would encode it, with EOS after each document."""
    if not texts:
        return []
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [list(ids) + [eos_id] for ids in encoded]


def tokenize_fim(
    tokenizer: Any, examples: Sequence[FimText], eos_id: int
) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, middle ids and EOS) of each FIM example, the prompt encoded alone as the
    server encodes it, for `pack_examples`."""
    if not examples:
        return []
    prompts = tokenizer([e.prompt for e in examples], add_special_tokens=False)["input_ids"]
    middles = tokenizer([e.middle for e in examples], add_special_tokens=False)["input_ids"]
    return [(list(p), [*m, eos_id]) for p, m in zip(prompts, middles, strict=True)]


def pack(docs: Sequence[Sequence[int]], seq_len: int, pad_id: int) -> Blocks:
    """Concatenate documents and cut the stream into `seq_len` blocks; pad only the last."""
    stream = [t for doc in docs for t in doc]
    ids, lengths = [], []
    for start in range(0, len(stream), seq_len):
        row = stream[start : start + seq_len]
        lengths.append(len(row))
        ids.append(row + [pad_id] * (seq_len - len(row)))
    return Blocks(ids, lengths)


def pack_examples(examples: Sequence[tuple[Sequence[int], Sequence[int]]], seq_len: int) -> Blocks:
    """(prompt ids, target ids) examples, each kept whole, packed in order into rows of at
    most `seq_len` ids (an example longer than that gets a row of its own); the loss is
    taken on the targets only. Rows are not padded (`to_batch` pads a batch)."""
    ids: list[list[int]] = []
    labels: list[list[int]] = []
    for prompt, target in examples:
        row = [*prompt, *target]
        learned = [IGNORE] * len(prompt) + list(target)
        if ids and len(ids[-1]) + len(row) <= seq_len:
            ids[-1] += row
            labels[-1] += learned
        else:
            ids.append(row)
            labels.append(learned)
    return Blocks(ids, [len(r) for r in ids], labels)


def spread(blocks: Blocks, count: int) -> Blocks:
    """At most `count` blocks, evenly spaced over the whole set (a fixed evaluation subset)."""
    n = len(blocks.ids)
    if n <= count:
        return blocks
    return blocks.pick([i * n // count for i in range(count)])
