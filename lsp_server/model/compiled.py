"""Decode and verify steps through `torch.compile`, over a static KV cache.

Eager PyTorch pays a fixed cost per operator, and a decode step of a small
model is hundreds of small operators: on a GPU the step is bound by kernel
launches, not by the arithmetic. Compiling the step fuses them, which needs
shapes that do not change from step to step. So `CompiledBackend` keeps its
keys and values in transformers' `StaticCache` (preallocated; a rollback only
moves the length back, and stale positions are masked and later overwritten)
and pads every short chunk to one of a few fixed widths: 1 for a decode step,
1 + the draft length for a verification. The padding positions are computed
and then cropped, which leaves the kept positions exactly as without them
(attention is causal). Longer chunks (prefill) run eager over the same cache.

Compiled kernels are cached on disk under `$CODETAILOR_HOME/inductor`
(inductor's FX graph and AOT autograd caches), so a restart recompiles from
that cache in seconds rather than minutes.

`choose_compile` decides `--compile auto`: on for CUDA; off on the CPU, where
it was measured not to pay back its compile time at start-up (fp32 steps got
no faster; bf16 steps 14-21% faster; docs/benchmarks.md, "Compiled decode").
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import Cache, StaticCache

from lsp_server.errors import CodetailorError
from lsp_server.model.backend import TransformersBackend
from lsp_server.model.engine import DRAFT_TOKENS
from lsp_server.model.loading import cache_home

log = logging.getLogger(__name__)

COMPILE_CHOICES = ("auto", "on", "off")


def choose_compile(choice: str, device: str) -> bool:
    """Whether `--compile CHOICE` compiles on `device`: auto is on for CUDA only."""
    if choice not in COMPILE_CHOICES:
        raise CodetailorError(f"unknown --compile '{choice}': use auto, on or off")
    if choice == "auto":
        return device.startswith("cuda")
    return choice == "on"


def use_compile_cache(home: Path | None = None) -> str:
    """Point inductor's on-disk caches under Codetailor's home, unless the user chose a folder.

    Importing inductor sets `TORCHINDUCTOR_CACHE_DIR` to its default (a folder
    in /tmp, gone at reboot), so that value counts as unset.
    """
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if current is None or current == default_cache_dir():
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str((home or cache_home()) / "inductor")
    return os.environ["TORCHINDUCTOR_CACHE_DIR"]


class CompiledBackend(TransformersBackend):
    """A `TransformersBackend` whose short steps run compiled, over a `StaticCache`.

    `widths` are the padded step sizes (each compiles once); `capacity` the
    positions a new cache holds, grown (and recompiled for) when a sequence
    needs more. Greedy output equals the eager backend's up to floating-point
    ties: the compiled kernels may round differently.
    """

    def __init__(
        self,
        model: Any,
        eos_token_ids: Iterable[int],
        *,
        widths: Iterable[int] = (1, 1 + DRAFT_TOKENS),
        capacity: int = 2048,
        mode: str | None = None,
    ) -> None:
        super().__init__(model, eos_token_ids)
        self.widths = sorted(set(int(w) for w in widths))
        self.capacity = capacity
        probe = StaticCache(config=model.config, max_cache_len=8)
        if any(getattr(layer, "is_sliding", False) for layer in probe.layers):
            raise CodetailorError("--compile: sliding-window attention is not supported")
        use_compile_cache()
        # dynamic=False: one graph per width and capacity, no symbolic shapes.
        self._step = torch.compile(self._padded_step, fullgraph=True, dynamic=False, mode=mode)
        self.compile_seconds: dict[int, float] = {}  # width -> first call (compile + run)

    def new_cache(self) -> Cache:
        return StaticCache(config=self.model.config, max_cache_len=self.capacity)

    def _padded_step(self, ids: torch.Tensor, cache: Cache) -> torch.Tensor:
        kwargs = {self._cache_kwarg: cache}
        out = self.model(input_ids=ids, use_cache=True, logits_to_keep=ids.shape[1], **kwargs)
        return out.logits[0]

    @torch.inference_mode()
    def warm(self) -> dict[int, float]:
        """Compile every width now (on a scratch cache); seconds per width."""
        if not self.widths:
            return {}
        cache = self.new_cache()
        self._run(cache, [0] * (max(self.widths) + 1), keep=1)  # an eager prefill first
        for width in self.widths:
            self._run(cache, [0] * width, keep=width)
        return dict(self.compile_seconds)

    def _run(self, cache: Cache, token_ids: Sequence[int], keep: int) -> torch.Tensor:
        """Append `token_ids`; the logits of the last `keep` of them, one row each."""
        n = len(token_ids)
        length = int(cache.get_seq_length())
        width = next((w for w in self.widths if w >= n), None)
        _reserve(cache, length + (width or n))
        if width is None:  # a prefill chunk: eager, over the same static cache
            return super()._run(cache, token_ids, keep)
        padded = [*token_ids, *[token_ids[-1]] * (width - n)]
        ids = torch.tensor([padded], dtype=torch.long, device=self.device)
        started = time.monotonic()
        logits = self._step(ids, cache)
        if width not in self.compile_seconds:
            self.compile_seconds[width] = time.monotonic() - started
            log.info("compiled the %d-token step in %.1f s", width, self.compile_seconds[width])
        if width > n:  # the padding's positions go; the real ones never saw them
            cache.crop(n - width)
        return logits[n - keep : n]


def _reserve(cache: Cache, needed: int) -> None:
    """Grow every layer of `cache` in place to hold `needed` positions (a new compiled shape)."""
    layers: list[Any] = list(cache.layers)
    if not layers or needed <= layers[0].max_cache_len:
        return
    capacity = max(needed, 2 * layers[0].max_cache_len)
    for layer in layers:
        layer.max_cache_len = capacity
        if not layer.is_initialized:
            continue
        for name in ("keys", "values"):
            old = getattr(layer, name)
            new = old.new_zeros((*old.shape[:2], capacity, old.shape[-1]))
            new[:, :, : old.shape[2]] = old
            torch._dynamo.mark_static_address(new)
            setattr(layer, name, new)
