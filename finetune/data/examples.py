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
    """Packed sequences of exactly `seq_len` ids; `lengths` counts the real (unpadded) ones."""

    ids: list[list[int]]
    lengths: list[int]

    @property
    def tokens(self) -> int:
        return sum(self.lengths)

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for row in self.ids:
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


def spread(blocks: Blocks, count: int) -> Blocks:
    """At most `count` blocks, evenly spaced over the whole set (a fixed evaluation subset)."""
    n = len(blocks.ids)
    if n <= count:
        return blocks
    picks = [i * n // count for i in range(count)]
    return Blocks([blocks.ids[i] for i in picks], [blocks.lengths[i] for i in picks])
