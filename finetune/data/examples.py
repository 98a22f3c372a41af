"""Training examples: documents in the model's prompt format, FIM-transformed, packed.

The FIM layout comes from `lsp_server.completion.prompt.build_prompt`, the function the
server builds its prompts with, so the adapter learns exactly the layout it is
served with. A prefix-only format gets plain documents. Pure: no torch.
"""

from __future__ import annotations

import hashlib
import random
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from lsp_server.completion.prompt import PromptFormat, build_prompt, file_headers

CHARS_PER_TOKEN = 3  # rough, for code; only used to cut long files into block-sized chunks


def fim_text(
    fmt: PromptFormat, prefix: str, middle: str, suffix: str, spm: bool, path: str | None = None
) -> str:
    """One FIM example: the serving prompt for (prefix, suffix), with `path`'s header, then
    the middle.

    `spm` asks for the suffix-prefix-middle variant (StarCoder's SPM:
    `<pre><suf>suffix<mid>prefix middle`) for a PSM format that has a middle
    marker; formats that are SPM by nature get it from `build_prompt`.
    """
    if spm and fmt.order == "psm" and fmt.middle:
        outside, inside = file_headers(fmt, path)
        head = f"{fmt.bos}{outside}{fmt.prefix}{fmt.suffix}{suffix}{fmt.middle}"
        return f"{head}{inside}{prefix}{middle}"
    return build_prompt(fmt, prefix, suffix, path=path) + middle


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
        # The same headers the server's prompts carry (lsp_server.completion.prompt), so an
        # adapter sees at serving time the layout it was trained on.
        shown_path = path if header else None
        outside, inside = file_headers(fmt, shown_path)
        for n, piece in enumerate(chunks(text, seq_len * CHARS_PER_TOKEN)):
            rng = random.Random(f"{seed}:{path}:{n}")
            if fmt.is_fim and rng.random() < fim_rate:
                a, b = sorted(rng.randrange(len(piece) + 1) for _ in range(2))
                spm = rng.random() < spm_rate
                out.append(fim_text(fmt, piece[:a], piece[a:b], piece[b:], spm, shown_path))
            else:
                out.append(fmt.bos + outside + inside + piece)
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
