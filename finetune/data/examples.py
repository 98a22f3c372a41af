"""Training examples: files cut into documents in the model's prompt format, some
FIM-transformed, then tokenized and packed.

Every marker and header comes from `lsp_server.completion.prompt`
(`training_document`, `fim_example`), the module the server builds its prompts
with, so the adapter learns exactly the layout it is served with; this module
only decides which text goes where. A prefix-only format gets plain documents.
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


def documents(
    fmt: PromptFormat,
    files: Iterable[tuple[str, str]],
    *,
    seq_len: int,
    seed: int = 0,
    header: bool = True,
    fim_rate: float = 0.0,
    spm_rate: float = 0.0,
) -> list[str]:
    """Training texts for (path, text) pairs: one per block-sized chunk of each file.

    Each chunk draws its FIM choice and span from its own RNG, seeded by the
    seed, path and chunk number, so adding a file changes no other example.
    """
    out: list[str] = []
    for path, text in files:
        shown_path = path if header else None
        for n, piece in enumerate(chunks(text, seq_len * CHARS_PER_TOKEN)):
            rng = random.Random(f"{seed}:{path}:{n}")
            if fmt.is_fim and rng.random() < fim_rate:
                a, b = sorted(rng.randrange(len(piece) + 1) for _ in range(2))
                spm = rng.random() < spm_rate
                prefix, middle, suffix = piece[:a], piece[a:b], piece[b:]
                out.append(fim_example(fmt, prefix, middle, suffix, spm=spm, path=shown_path))
            else:
                out.append(training_document(fmt, piece, path=shown_path))
    return out


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
