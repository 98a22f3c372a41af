"""The server's resident memory with a model, after one completion: `codetailor bench memory`.

    codetailor bench memory [--model smollm2-135m] [--dtype D] [--file F] [--breakdown] [--json]

Starts `codetailor serve` on stdio, opens FILE (default: the standard library's
json/decoder.py), asks for one inline completion two thirds into it, waits for
the server's background work to settle, then reads its /proc/PID/status:
VmRSS (resident now), VmHWM (the peak, loading included), RssAnon (the process's
own memory) and RssFile (mapped files: libraries). Linux only.

Beside it, in the same run, two child processes read their own memory the same
way: llama-cpp-python on the same GGUF file after one 16-token completion of the
same text before the same cursor (one thread, 2,048-token context; skipped where it
is not installed or the model is no GGUF file), and a Python that only imports torch
(the floor under any server that runs the model through torch). The report gives
ours / llama.cpp and torch's floor / llama.cpp, both from VmRSS after the completion.

`--breakdown` also loads the model in this process the way the server does and
says what holds the memory: the libraries imported, the model's tensors by kind
(float weights, 4-bit weights and their scales, the packed output projection)
and the rest (tokenizer, KV cache of a completion, allocator).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lsp_server.measure.client import ServerProcess, serve_command
from lsp_server.measure.engine_speed import mid_line_cursor

FIELDS = ("VmRSS", "VmHWM", "RssAnon", "RssFile")
PROMPT_CHARS = 4000  # the text before the cursor that llama.cpp completes
CHILD_TIMEOUT_S = 600.0

# Each child prints its own memory as JSON; neither imports this package, which would count.
_MEMORY = """
import json
from pathlib import Path
def memory():
    fields = ("VmRSS", "VmHWM", "RssAnon", "RssFile")
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in fields:
            values[key] = int(rest.split()[0]) // 1024
    return values
"""
_TORCH_CHILD = (
    _MEMORY
    + """
import torch
print(json.dumps({"after_import_mb": memory()}))
"""
)
_LLAMA_CHILD = (
    _MEMORY
    + """
import sys
started = memory()
try:
    from llama_cpp import Llama
except ImportError:
    print(json.dumps(None))
    raise SystemExit(0)
llm = Llama(model_path=sys.argv[1], n_ctx=2048, n_threads=1, n_threads_batch=1, verbose=False)
loaded = memory()
out = llm(Path(sys.argv[2]).read_text(), max_tokens=16, temperature=0.0)
print(json.dumps({"started_mb": started, "loaded_mb": loaded, "after_completion_mb": memory(),
                  "completion_chars": len(out["choices"][0]["text"])}))
"""
)


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


def child_memory(script: str, *args: str) -> Any:
    """What a child Python running `script` prints (its own memory, as JSON)."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def beside(model: str, file: Path, ours: dict[str, int], scratch: Path) -> dict[str, Any]:
    """llama.cpp's memory on the same GGUF (where it runs) and torch's floor, each against
    llama.cpp's VmRSS after its completion."""
    from lsp_server.model.loading import resolve_model

    report: dict[str, Any] = {"torch_only": child_memory(_TORCH_CHILD)}
    gguf = resolve_model(model).path
    if gguf is None or gguf.suffix.lower() != ".gguf":
        report["llama_cpp"] = "not run: the model is no GGUF file"
        return report
    text = file.read_text()
    prompt = scratch / "prompt.txt"
    prompt.write_text(text[: mid_line_cursor(text)][-PROMPT_CHARS:])
    try:
        llama = child_memory(_LLAMA_CHILD, str(gguf), str(prompt))
    except subprocess.CalledProcessError as exc:
        why = (exc.stderr or "").strip().splitlines()[-1:] or [f"exit status {exc.returncode}"]
        report["llama_cpp"] = f"failed: {why[0][:200]}"
        return report
    if llama is None:
        report["llama_cpp"] = "not run: llama-cpp-python is not installed"
        return report
    theirs = llama["after_completion_mb"]["VmRSS"]
    report["llama_cpp"] = llama
    report["ours_over_llama_cpp"] = round(ours["VmRSS"] / theirs, 2)
    report["torch_only_over_llama_cpp"] = round(
        report["torch_only"]["after_import_mb"]["VmRSS"] / theirs, 2
    )
    return report


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
    parser.add_argument(
        "--alone",
        action="store_true",
        help="ours only: no llama.cpp on the same GGUF, no torch-only floor beside it",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    report = asyncio.run(server_memory(args.model, args.file, dtype=args.dtype))
    if not args.alone:
        with tempfile.TemporaryDirectory(prefix="codetailor-memory-") as scratch:
            ours = report["after_completion_mb"]
            report["beside"] = beside(args.model, args.file, ours, Path(scratch))
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
