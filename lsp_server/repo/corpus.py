"""From a repository to the source files worth training on.

`collect` lists files (`git ls-files`, or the .gitignore rules for a plain
folder), drops what is not hand-written source (binaries, huge, minified or
generated files, lock files, vendored folders), redacts secrets, and removes
exact and near duplicates. Which files count, and the train/held-out split, come
from `lsp_server.repo.files`, the lister the server's retrieval uses too.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lsp_server.errors import CodetailorError
from lsp_server.repo.files import (
    SOURCE_EXTENSIONS,
    list_files,
    read_text,
    skip_reason_for_path,
    skip_reason_for_text,
)
from lsp_server.repo.secrets import redact


@dataclass(frozen=True)
class SourceFile:
    """One file kept for training: its path relative to the repository, and redacted text."""

    path: str
    text: str


@dataclass
class Corpus:
    """The files kept, and counts of everything that was dropped or redacted."""

    files: list[SourceFile]
    listed: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    redactions: Counter[str] = field(default_factory=Counter)

    def stats(self) -> dict[str, object]:
        return {
            "files_listed": self.listed,
            "files_kept": len(self.files),
            "bytes_kept": sum(len(f.text.encode()) for f in self.files),
            "skipped": dict(sorted(self.skipped.items())),
            "redactions": dict(sorted(self.redactions.items())),
        }


def collect(
    repo: Path,
    *,
    max_file_bytes: int = 512_000,
    extensions: frozenset[str] | None = None,
    near_duplicate_threshold: float = 0.85,
) -> Corpus:
    """The repository's training files, filtered, redacted and deduplicated, sorted by path."""
    if not repo.is_dir():
        raise CodetailorError(f"{repo} is not a folder; pass the repository to train on")
    corpus = Corpus(files=[])
    candidates = list_files(repo)
    corpus.listed = len(candidates)
    extensions = extensions or SOURCE_EXTENSIONS
    kept: list[SourceFile] = []
    for rel in candidates:
        reason = skip_reason_for_path(rel, extensions)
        text = None
        if reason is None:
            text, reason = read_text(repo / rel, max_file_bytes)
        if reason is None and text is not None:
            reason = skip_reason_for_text(text)
        if reason is not None or text is None:
            corpus.skipped[reason or "unreadable"] += 1
            continue
        # Secrets go before anything else sees the text: dedupe, tokenizer, model.
        clean, found = redact(text)
        corpus.redactions.update(found)
        kept.append(SourceFile(rel, clean))
    corpus.files = deduplicate(kept, near_duplicate_threshold, corpus.skipped)
    return corpus


# --- duplicates --------------------------------------------------------------------------

SKETCH_SIZE = 64  # hashes kept per file (bottom-k MinHash)
SHINGLE = 5  # words per shingle


def sketch(text: str) -> list[int]:
    """The smallest SKETCH_SIZE hashes of the file's word 5-grams (bottom-k MinHash)."""
    words = re.findall(r"\w+|[^\w\s]", text)
    grams = {" ".join(words[i : i + SHINGLE]) for i in range(max(len(words) - SHINGLE + 1, 1))}
    return sorted({zlib.crc32(g.encode()) for g in grams})[:SKETCH_SIZE]


def similarity(a: list[int], b: list[int]) -> float:
    """Estimated Jaccard similarity of two files from their bottom-k sketches."""
    union = sorted(set(a) | set(b))[:SKETCH_SIZE]
    if not union:
        return 1.0
    both = set(a) & set(b)
    return sum(h in both for h in union) / len(union)


def deduplicate(
    files: list[SourceFile], threshold: float, skipped: Counter[str]
) -> list[SourceFile]:
    """Keep the first of each group of exact or near duplicates (files sorted by path).

    Candidates are files sharing one of their four smallest hashes (two files
    with Jaccard similarity J share the smallest with probability J), then
    checked on the whole sketch, so the cost stays near linear.
    """
    seen_exact: set[str] = set()
    kept: list[SourceFile] = []
    sketches: list[list[int]] = []
    buckets: dict[int, list[int]] = {}
    for f in files:
        digest = hashlib.sha256(f.text.encode()).hexdigest()
        if digest in seen_exact:
            skipped["duplicate_exact"] += 1
            continue
        seen_exact.add(digest)
        sk = sketch(f.text)
        candidates = {i for h in sk[:4] for i in buckets.get(h, ())}
        if any(similarity(sk, sketches[i]) >= threshold for i in candidates):
            skipped["duplicate_near"] += 1
            continue
        for h in sk[:4]:
            buckets.setdefault(h, []).append(len(kept))
        kept.append(f)
        sketches.append(sk)
    return kept
