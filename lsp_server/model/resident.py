"""Several LoRA adapters on one resident base model, chosen per request.

The server keeps the base weights once and loads each workspace folder's adapter
onto them with PEFT (`load_adapter` under a name of ours). With one adapter in
use it is merged into the base weights (no LoRA arithmetic per token); with
several, or an adapter and the bare base, or int4 weights (which cannot take a
merge: see int4.py), the weights stay unmerged and each generation first
selects its adapter (or disables them all for the base).

Merging is undone by subtracting the LoRA product again (PEFT's unmerge). In
float32 that gives the base weights back to within a rounding step; in bfloat16
or float16 it does not, and the drift would grow with every swap, so there the
base weights of the adapted layers are saved before merging and restored after
(memory: one more copy of those layers while an adapter is merged).

Every call that changes or selects adapters runs under `lock`, together with the
generation that follows (see wiring.AdapterEngine), so a request never runs on
weights half-way through a change.

A folder asked for again after its weights were replaced (`finetune` updated the
adapter in place: an incremental run, or a new run into the same folder) is loaded
again: the weights file's identity (inode, size, modification time) tells.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Collection
from pathlib import Path
from typing import Any

from lsp_server.errors import CodetailorError
from lsp_server.model.loading import (
    AdapterInfo,
    ModelSource,
    _first_line,
    check_adapter,
    check_plain_adapter,
)

log = logging.getLogger("codetailor.models")


class ResidentAdapters:
    """The adapters loaded onto one base model, keyed by their folder; None is the base."""

    def __init__(
        self, model: Any, source: ModelSource, fingerprint: str, *, merges: bool = True
    ) -> None:
        self.model = model  # the base: PEFT wraps its linear layers in place
        # False for weights an adapter cannot be merged into (int4): one adapter alone
        # then stays unmerged too, selected like one of several.
        self.merges = merges
        self.source = source
        self.fingerprint = fingerprint
        self.lock = threading.RLock()
        self.peft: Any = None  # the PeftModel once an adapter is loaded
        self.loaded: dict[str, tuple[str, AdapterInfo]] = {}  # folder -> (PEFT name, info)
        self._weights: dict[str, tuple[int, ...] | None] = {}  # folder -> its weights' identity
        self.merged: str | None = None  # the folder whose weights are merged in
        self._selected: object = None
        self._saved: dict[str, Any] = {}  # bf16/fp16 base weights of LoRA layers, merged
        self._names = 0

    def info(self, folder: str | None) -> AdapterInfo | None:
        return self.loaded[folder][1] if folder in self.loaded else None

    def sync(self, wanted: Collection[str | None]) -> dict[str, str]:
        """Hold exactly the adapters in `wanted` (None: the base model), merging the one
        adapter when it is the only thing wanted. Returns {folder: why not} for those that
        could not be loaded."""
        errors = self.add(wanted)
        self.keep_only(wanted)
        return errors

    def add(self, wanted: Collection[str | None]) -> dict[str, str]:
        """Load the adapters in `wanted` not loaded yet; {folder: why not} for failures.

        New ones come in before old ones go (`keep_only`): dropping the last adapter
        takes the LoRA layers out of the model, and the next would put them back; and
        until the new engines are ready, requests on the old ones still have theirs."""
        errors: dict[str, str] = {}
        with self.lock:
            for new in dict.fromkeys(wanted):
                if new is None:
                    continue
                replaced = new in self.loaded and self._weights.get(new) != _identity(new)
                if new not in self.loaded or replaced:
                    try:
                        self._reload(new) if replaced else self._add(new)
                    except CodetailorError as exc:
                        log.info("cannot load adapter %s: %s", new, exc)  # the caller reports it
                        errors[new] = str(exc)
        return errors

    def keep_only(self, wanted: Collection[str | None]) -> None:
        """Drop the adapters not in `wanted`; merge the one left when it is all there is
        in use. (A request still holding a dropped adapter's engine is answered by the
        engine that replaced it: see wiring.AdapterEngine.)"""
        with self.lock:
            for gone in [f for f in self.loaded if f not in wanted]:
                self._remove(gone)
            live = [f for f in dict.fromkeys(wanted) if f is None or f in self.loaded]
            if len(live) == 1 and self.merges:
                self._merge(live[0])
            else:
                self._unmerge()

    def select(self, folder: str | None) -> None:
        """Make the model answer with `folder`'s adapter (None: the base model)."""
        with self.lock:
            if folder == self._selected or folder == self.merged and folder is not None:
                return
            if folder is not None and folder not in self.loaded:
                raise CodetailorError(f"adapter {folder} is no longer loaded")
            self._unmerge()
            if self.peft is not None:
                tuner = self.peft.base_model
                if folder is None:
                    tuner.disable_adapter_layers()
                else:
                    tuner.enable_adapter_layers()
                    tuner.set_adapter(self.loaded[folder][0])
            self._selected = folder

    def mode(self) -> str:
        """ "base" (no adapter), "merged" (one, merged in) or "unmerged" (chosen per request)."""
        if not self.loaded:
            return "base"
        return "merged" if self.merged is not None else "unmerged"

    def _add(self, folder: str) -> None:
        from peft import PeftModel

        path = Path(folder)
        meta = check_adapter(path, self.source.name, self.fingerprint)
        if not meta:  # a plain PEFT folder: no fingerprint to go by
            check_plain_adapter(path, self.model, self.source)
        self._unmerge()
        self._names += 1
        name = f"adapter{self._names}"
        try:
            # low_cpu_mem_usage: the LoRA weights are made empty and filled from the file,
            # not initialised at random first (a third of the load time on SmolLM2).
            if self.peft is None:
                self.peft = PeftModel.from_pretrained(
                    self.model,
                    str(path),
                    adapter_name=name,
                    is_trainable=False,
                    low_cpu_mem_usage=True,
                )
            else:
                self.peft.load_adapter(
                    str(path), adapter_name=name, is_trainable=False, low_cpu_mem_usage=True
                )
        except Exception as exc:  # noqa: BLE001 - shape mismatches surface as RuntimeError etc.
            raise CodetailorError(
                f"adapter {path} does not fit model '{self.source.name}'{_made_for(path)}: "
                f"{_first_line(exc)}"
            ) from exc
        self._exact_weights(path, name)
        self.loaded[folder] = (name, AdapterInfo(path=path, meta=meta))
        self._weights[folder] = _identity(folder)
        self._selected = _NOTHING  # load_adapter leaves the active adapter as it was

    def _reload(self, folder: str) -> None:
        """Load `folder`'s new weights under a new name, then drop the old ones (a failure
        leaves the old ones loaded)."""
        old = self.loaded[folder][0]
        self._add(folder)
        self.peft.base_model.set_adapter(self.loaded[folder][0])
        self.peft.base_model.delete_adapter(old)
        self._selected = _NOTHING

    def _exact_weights(self, path: Path, name: str) -> None:
        """The adapter's weights as the file holds them, over bfloat16 or float16 base weights.

        Loading with `low_cpu_mem_usage` moves the LoRA weights to the base layer's dtype and
        only then back to float32 (PEFT's autocast), so each went through bfloat16: unmerged
        (int4), the update the model serves was not the one trained. Copying the file's
        tensors into the float32 weights again costs one more read of a few MB."""
        from peft.utils import load_peft_weights, set_peft_model_state_dict

        if next(self.model.parameters()).dtype.itemsize >= 4:
            return  # float32 weights: nothing was rounded
        weights = load_peft_weights(str(path), device="cpu")
        set_peft_model_state_dict(self.peft, weights, adapter_name=name)

    def _remove(self, folder: str) -> None:
        self._unmerge()
        name, _ = self.loaded.pop(folder)
        self._weights.pop(folder, None)
        if not self.loaded:  # the last one: take the LoRA layers out of the model
            self.peft.base_model.unload()
            self.peft = None
        else:  # another one active first, so PEFT need not pick one (and warn)
            self.peft.base_model.set_adapter(next(iter(self.loaded.values()))[0])
            self.peft.base_model.delete_adapter(name)
        self._selected = _NOTHING

    def _merge(self, folder: str | None) -> None:
        if folder == self.merged:
            return
        self._unmerge()
        self.select(folder)
        if folder is None:
            return
        self._saved = {
            name: module.base_layer.weight.detach().clone()
            for name, module in self._lora_layers()
            if module.base_layer.weight.dtype.itemsize < 4  # bfloat16, float16: see above
        }
        self.peft.base_model.merge_adapter([self.loaded[folder][0]])
        self.merged = folder

    def _unmerge(self) -> None:
        if self.merged is None:
            return
        self.peft.base_model.unmerge_adapter()
        for name, module in self._lora_layers():
            if name in self._saved:
                module.base_layer.weight.data.copy_(self._saved[name])
        self._saved, self.merged = {}, None

    def _lora_layers(self) -> list[tuple[str, Any]]:
        from peft.tuners.lora import LoraLayer

        return [(n, m) for n, m in self.model.named_modules() if isinstance(m, LoraLayer)]


_NOTHING = object()  # "no adapter selected yet" (None means the base model)


def _identity(folder: str) -> tuple[int, ...] | None:
    """The adapter weights file's inode, size and modification time (None: unreadable)."""
    try:
        info = os.stat(Path(folder) / "adapter_model.safetensors")
    except OSError:
        return None
    return info.st_ino, info.st_size, info.st_mtime_ns


def _made_for(path: Path) -> str:
    try:
        wanted = json.loads((path / "adapter_config.json").read_text()).get(
            "base_model_name_or_path"
        )
    except (OSError, ValueError):
        wanted = None
    return f" (it was made for '{wanted}')" if wanted else ""
