"""Which adapter serves a repository after a fine-tune: the better one on held-out code.

A finished run registers its adapter (`lsp_server.model.registry`), and the
server uses the repository's newest entry. A quick 8-step run must not push
aside a better 40-step one, so the new adapter serves only when its held-out
loss is lower than the serving one's (both measured on the same held-out
files), when either has no figure, or when the user says so (`--serve-new`);
otherwise the serving one is registered again, which keeps it the newest.
The line returned says which one serves and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsp_server.model.adapter_meta import AdapterMeta, read_meta


@dataclass(frozen=True)
class Figure:
    """An adapter's held-out loss and the held-out set it was measured on."""

    loss: float | None
    heldout_tokens: Any

    @classmethod
    def of(cls, meta: AdapterMeta | None) -> Figure:
        if meta is None:
            return cls(None, None)
        loss = (meta.evaluation.get("after") or {}).get("heldout_loss")
        measured = loss if isinstance(loss, (int, float)) else None
        return cls(measured, meta.data.get("heldout_tokens"))

    def beats(self, other: Figure) -> bool | None:
        """True/False when the two compare (same held-out set, both measured), else None."""
        if self.loss is None or other.loss is None or self.heldout_tokens != other.heldout_tokens:
            return None
        return self.loss < other.loss


def register_finished(repo: str, out: str, *, serve_new: bool = False) -> str:
    """Register the adapter at `out` for `repo`; keep the better one serving; say which.

    Raises CodetailorError or OSError when the registry cannot be written."""
    from lsp_server.model import registry

    folder = Path(out).expanduser().resolve()
    meta = read_meta(folder)
    base = meta.base_model.name if meta and meta.base_model else None
    serving = registry.lookup_match(repo, base)
    entry = registry.register_adapter(repo, folder)
    where = entry.remote or entry.repo_root
    new = Figure.of(meta)
    if serving is None or serving.refused or Path(serving.entry.path) == folder:
        return f"registered adapter {entry.name} for {where}; it serves{_loss(new)}"
    old_entry = serving.entry
    old = Figure.of(read_meta(Path(old_entry.path)))
    verdict = old.beats(new)
    if verdict and not serve_new:
        registry.register_adapter(old_entry.repo_root or repo, old_entry.path, name=old_entry.name)
        return (
            f"registered adapter {entry.name} for {where}, but {old_entry.name} still serves: "
            f"its held-out loss {old.loss:.4f} beats {new.loss:.4f} (pass --serve-new to "
            "serve the new one)"
        )
    why = {
        None: " (held-out figures not comparable)",
        False: f" (held-out loss {new.loss:.4f}, {old_entry.name} had {old.loss:.4f})",
        True: " (--serve-new)",
    }[verdict]
    return f"registered adapter {entry.name} for {where}; it serves{why}"


def _loss(figure: Figure) -> str:
    return f" (held-out loss {figure.loss:.4f})" if figure.loss is not None else ""
