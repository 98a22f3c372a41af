"""The server's resident memory with a model, after one completion: `codetailor bench memory`.

    codetailor bench memory [--model smollm2-135m] [--dtype D] [--file F] [--breakdown] [--json]

Starts `codetailor serve` on stdio, opens FILE (default: the standard library's
json/decoder.py), asks for one inline completion two thirds into it, waits for
the server's background work to settle, then reads its /proc/PID/status:
VmRSS (resident now), VmHWM (the peak, loading included), RssAnon (the process's
own memory) and RssFile (mapped files: libraries). Linux only.

`--breakdown` also loads the model in this process the way the server does and
says what holds the memory: the libraries imported, the model's tensors by kind
(float weights, 4-bit weights and their scales, the packed output projection)
and the rest (tokenizer, KV cache of a completion, allocator).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from lsp_server.measure.client import ServerProcess, serve_command
from lsp_server.measure.engine_speed import mid_line_cursor

FIELDS = ("VmRSS", "VmHWM", "RssAnon", "RssFile")


def memory_mb(pid: int | str = "self") -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon and RssFile of process `pid`, in MiB (Linux /proc)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in FIELDS:
            values[key] = int(rest.split()[0]) // 1024
    return values


async def server_memory(
    model: str, file: Path, *, dtype: str | None = None, settle_s: float = 2.0
) -> dict[str, Any]:
    """Start a server, ask for one completion, and read its memory."""
    server = ServerProcess(serve_command(model, dtype=dtype))
    try:
        await server.start({"maxTokens": 16})
        loaded = memory_mb(server.pid) if server.pid else {}
        text = file.read_text()
        uri = file.resolve().as_uri()
        server.open(uri, text)
        started = time.perf_counter()
        answer = await server.complete(uri, text, mid_line_cursor(text), invoked=True)
        first_ms = (time.perf_counter() - started) * 1000
        await asyncio.sleep(settle_s)  # what runs after an answer (next suggestion) settles
        status = await server.status()
        after = memory_mb(server.pid) if server.pid else {}
    finally:
        await server.stop()
    return {
        "model": status.get("model"),
        "device": status.get("device"),
        "dtype": status.get("dtype"),
        "first_completion_ms": round(first_ms),
        "completion_chars": len(answer.text),
        "loaded_mb": loaded,
        "after_completion_mb": after,
    }


def breakdown(model: str, file: Path, dtype: str | None = None) -> dict[str, Any]:
    """What holds the memory, in this process: imports, the model's tensors by kind, the
    rest after loading, and what one completion adds (its KV cache)."""
    import torch  # noqa: F401 - the libraries' share is measured with them imported
    import transformers  # noqa: F401

    from lsp_server.model.factory import load_completers
    from lsp_server.model.loading import LoadedModel
    from lsp_server.spec import ModelSpec

    imported = memory_mb()["RssAnon"]
    held = load_completers(ModelSpec(model=model, dtype=dtype or "auto"))
    loaded = memory_mb()["RssAnon"]
    assert isinstance(held.model, LoadedModel)  # a local model: no engine URL in the spec
    tensors = tensor_mb(held.model.model)
    text = file.read_text()
    held.completer.complete(text, mid_line_cursor(text), max_tokens=16)
    completed = memory_mb()["RssAnon"]
    return {
        "dtype": held.model.dtype,
        "anon_after_imports_mb": imported,
        "anon_after_load_mb": loaded,
        "model_tensors_mb": tensors,
        "load_other_mb": loaded - imported - sum(tensors.values()),
        "one_completion_adds_mb": completed - loaded,
    }


def tensor_mb(model: Any) -> dict[str, int]:
    """The model's parameters and buffers in MiB, by name and dtype (shared storage once)."""
    sizes: dict[str, int] = {}
    seen: set[int] = set()
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        try:
            key, size = tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes()
        except (NotImplementedError, RuntimeError):  # oneDNN's packed weight is opaque
            key, size = id(tensor), tensor.numel() * tensor.element_size()
        if key in seen:
            continue
        seen.add(key)
        kind = f"{name.rsplit('.', 1)[-1]} ({str(tensor.dtype).removeprefix('torch.')})"
        sizes[kind] = sizes.get(kind, 0) + size
    return {k: round(v / 2**20) for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="codetailor bench memory",
        description="The server's resident memory (RSS) with a model, after one completion; "
        "with --breakdown, what holds it.",
    )
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dtype", default=None, help="the server's --dtype (default auto)")
    parser.add_argument("--file", type=Path, default=Path(json.__file__).with_name("decoder.py"))
    parser.add_argument("--breakdown", action="store_true", help="also say what holds it")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    report = asyncio.run(server_memory(args.model, args.file, dtype=args.dtype))
    if args.breakdown:
        report["breakdown"] = breakdown(args.model, args.file, args.dtype)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        from lsp_server.measure.tables import print_summary

        print_summary(report, title="codetailor serve: memory after one completion")
    return 0


if __name__ == "__main__":
    sys.exit(main())
