"""Tokens per forward of the engine's drafting, counted exactly on recorded completions.

Greedy decoding's output does not depend on drafting, only the number of
forwards does. So the typing replay's completions are generated once with the
model (`record`), and then re-decoded by any version of `Engine` with a backend
that replays them (`replay`): forwards are counted exactly, in milliseconds,
without timing anything.

    python -m lsp_server.measure.draft_replay record out.pkl FILE... [--steps 20]
    python -m lsp_server.measure.draft_replay replay out.pkl [--baseline-tree ../before]
"""

from __future__ import annotations

import argparse
import importlib.util
import pickle
import sys
from collections import Counter
from pathlib import Path
from typing import Any


def record(files: list[Path], steps: int, dtype: str) -> list[dict[str, Any]]:
    """Each completion of the typing replay over `files`: the engine's inputs and output."""
    from lsp_server.measure.replay import typing_replay
    from lsp_server.model.factory import load_completers
    from lsp_server.spec import ModelSpec

    loaded = load_completers(ModelSpec(device="cpu", dtype=dtype))
    completer = loaded.completer
    engine: Any = loaded.engine()
    records: list[dict[str, Any]] = []
    generate = engine.generate

    def recording(prompt: Any, **kwargs: Any) -> Any:
        g = generate(prompt, **kwargs)
        records.append(
            {
                "prompt": list(prompt),
                "hint": list(kwargs.get("hint", ())),
                "max_new": kwargs["max_new_tokens"],
                "tokens": list(g.tokens),
                "reason": g.stop_reason,
                "eos": min(engine.backend.eos_token_ids),
            }
        )
        return g

    engine.generate = recording
    for path in files:
        for text, cursor in typing_replay(str(path), path.read_text(), max_steps=steps).documents():
            completer.complete(text, cursor, max_tokens=16, mode="line", path=str(path))
    return records


class ReplayBackend:
    """Answers with the recorded output where the context is the recorded one, else token 1."""

    def __init__(self, eos: int) -> None:
        self.eos_token_ids = frozenset({eos})
        self.eos = eos
        self.record: dict[str, Any] = {}
        self.widths: Counter[int] = Counter()  # forwards by the tokens they took

    def new_cache(self) -> list[int]:
        return []

    def _next(self, context: list[int]) -> int:
        prompt, out = self.record["prompt"], [*self.record["tokens"], self.eos]
        pos = len(context) - len(prompt)
        if 0 <= pos < len(out) and context == prompt + out[:pos]:
            return int(out[pos])
        return 1

    def forward(
        self, cache: list[int], token_ids: Any, allowed: Any = None, *, scores: Any = None
    ) -> int:
        cache.extend(token_ids)
        self.widths[len(token_ids)] += 1
        return self._next(cache)

    def verify(
        self,
        cache: list[int],
        token_ids: Any,
        *,
        keep: Any = None,
        allowed: Any = None,
        scores: Any = None,
    ) -> list[int]:
        start, n = len(cache), len(token_ids)
        cache.extend(token_ids)
        self.widths[n] += 1
        return [self._next(cache[: start + i + 1]) for i in range(n - (keep or n), n)]

    def crop(self, cache: list[int], length: int) -> None:
        del cache[length:]


def replay(records: list[dict[str, Any]], engine_module: Any, **options: Any) -> dict[str, Any]:
    """Re-decode `records` with `engine_module.Engine`; tokens per forward, and the
    forwards by the tokens each took (`widths`: what they cost depends on the width,
    `codetailor bench int4` times each)."""
    backend = ReplayBackend(records[0]["eos"] if records else 0)
    engine = engine_module.Engine(backend, **options)
    tokens = forwards = 0
    for r in records:
        backend.record = r
        n = len(r["tokens"])
        stop = (lambda out, n=n: len(out) >= n) if r["reason"] == "stop" else None
        g = engine.generate(r["prompt"], max_new_tokens=r["max_new"], stop=stop, hint=r["hint"])
        assert g.tokens == r["tokens"], "drafting changed the output"
        tokens, forwards = tokens + len(g.tokens), forwards + g.forwards
    return {
        "tokens": tokens,
        "forwards": forwards,
        "tokens_per_forward": tokens / forwards,
        "widths": dict(sorted(backend.widths.items())),
    }


def _engine_of(tree: Path) -> Any:
    spec = importlib.util.spec_from_file_location(
        "baseline_engine", tree / "lsp_server/model/engine.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_engine"] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("record", "replay"))
    parser.add_argument("data", type=Path)
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--baseline-tree", type=Path)
    args = parser.parse_args()
    if args.action == "record":
        args.data.write_bytes(pickle.dumps(record(args.files, args.steps, args.dtype)))
        return
    from lsp_server.model import engine

    records = pickle.loads(args.data.read_bytes())
    if args.baseline_tree:
        print("before", replay(records, _engine_of(args.baseline_tree)))
    print("ours", replay(records, engine))
    print("ours, no history", replay(records, engine, draft_history=0))
    print("ours, 16 drafts", replay(records, engine, draft_tokens=16))
    print("ours, 3 drafts (4-bit weights)", replay(records, engine, draft_tokens=3))


if __name__ == "__main__":
    main()
