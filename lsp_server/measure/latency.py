"""`codetailor bench latency`: replay typing through the real server and through baselines.

Variants, all on the same model, the same documents and the same prompt text:
- `ours`: `codetailor serve` in a subprocess, driven over LSP (didChange, then
  textDocument/inlineCompletion after every word), with KV prefix reuse and
  typing-through; the time is the client's round trip.
- `naive`: the same model calling transformers' `generate` on the full prompt
  for every request: no reuse, no typing-through.
- `llama.cpp`: where `llama-cpp-python` is installed and the model is a GGUF
  file, llama.cpp on that file with its prompt cache (what llama.vscode uses).
- `local`: with `--engine openai:URL`, `ours` runs on that remote engine and
  `local` is the same server with the local engine, so `ours/local` is the
  remote path's overhead on the same model.

Single-line completions everywhere, so the variants do the same work.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsp_server.measure.quality.metrics import percentile
from lsp_server.measure.replay import Replay, typing_replay


@dataclass
class VariantResult:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        data = self.latencies_ms
        return {
            "requests": len(data),
            "p50_ms": round(percentile(data, 50), 1),
            "p95_ms": round(percentile(data, 95), 1),
            "mean_ms": round(statistics.fmean(data), 1) if data else 0.0,
        } | self.extra


def _position(text: str, offset: int) -> tuple[int, int]:
    """LSP line and UTF-16 character of a character offset."""
    line = text.count("\n", 0, offset)
    start = text.rfind("\n", 0, offset) + 1
    return line, len(text[start:offset].encode("utf-16-le")) // 2


@asynccontextmanager
async def server_session(
    model: str,
    adapter: str | None,
    options: dict[str, Any],
    name: str = "codetailor-bench",
    engine: str = "local",
    root: Path | None = None,
) -> AsyncIterator[tuple[Any, Callable[[], Awaitable[dict[str, Any]]]]]:
    """`codetailor serve` in a subprocess, initialized with `options` and its model loaded:
    yields the pygls client and a function that asks for `codetailor.status`. The client
    introduces itself as `name`, in the workspace `root` (None: no workspace)."""
    from lsprotocol import types
    from pygls.lsp.client import LanguageClient

    command = [sys.executable, "-m", "lsp_server.cli", "serve", "--model", model]
    command += ["--engine", engine]
    if adapter:
        command += ["--adapter", adapter]
    client = LanguageClient(name, "1")
    await client.start_io(*command)
    try:
        await client.initialize_async(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(),
                initialization_options=options,
                client_info=types.ClientInfo(name=name),
                root_uri=root.resolve().as_uri() if root else None,
            )
        )
        client.initialized(types.InitializedParams())

        async def status() -> dict[str, Any]:
            return await client.workspace_execute_command_async(
                types.ExecuteCommandParams(command="codetailor.status")
            )

        while (state := await status())["state"] == "loading":
            await asyncio.sleep(0.2)
        if state["state"] != "ready":
            raise RuntimeError(f"the server could not load the model: {state.get('error')}")
        yield client, status
        await client.shutdown_async(None)
        client.exit(None)
    finally:
        await client.stop()


async def run_ours(
    replays: list[Replay],
    model: str,
    adapter: str | None,
    max_tokens: int,
    engine: str = "local",
    name: str = "ours",
) -> VariantResult:
    from lsprotocol import types

    result = VariantResult(name)
    options = {"maxTokens": max_tokens, "multiline": "never"}
    async with server_session(model, adapter, options, engine=engine) as (client, status):
        prompt_tokens = cached_tokens = generated = 0
        decode_ms = 0.0
        model_runs, last_request = 0, None
        for n, replay in enumerate(replays):
            uri = Path(replay.path).resolve().as_uri() + f"#{n}"
            client.text_document_did_open(
                types.DidOpenTextDocumentParams(
                    text_document=types.TextDocumentItem(
                        uri=uri, language_id="python", version=1, text=replay.initial
                    )
                )
            )
            text = replay.initial
            for version, step in enumerate(replay.steps, start=2):
                text, params = _type_step(client, uri, version, text, step)
                started = time.perf_counter()
                await client.text_document_inline_completion_async(params)
                result.latencies_ms.append((time.perf_counter() - started) * 1000)
                generation = (await status()).get("lastGeneration") or {}
                if generation.get("request") != last_request:
                    last_request = generation.get("request")
                    model_runs += 1
                    prompt_tokens += generation.get("prompt_tokens", 0)
                    cached_tokens += generation.get("cached_tokens", 0)
                    generated += generation.get("generated_tokens", 0)
                    decode_ms += generation.get("decode_ms", 0.0)
        final = await status()
        result.extra = {
            "model_runs": model_runs,
            "typing_through_hits": final.get("typingThroughHits", 0),
            "cached_token_share": round(cached_tokens / prompt_tokens, 3) if prompt_tokens else 0,
            "decode_tokens_per_s": round(generated / (decode_ms / 1000), 1) if decode_ms else 0,
        }
    return result


def _type_step(client: Any, uri: str, version: int, text: str, step: Any) -> tuple[str, Any]:
    """Send one typed word as didChange; return the new text and the inline request after it."""
    from lsprotocol import types

    line, char = _position(text, step.offset)
    where = types.Position(line=line, character=char)
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(start=where, end=where), text=step.typed
                )
            ],
        )
    )
    text = text[: step.offset] + step.typed + text[step.offset :]
    line, char = _position(text, step.cursor)
    params = types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=line, character=char),
        context=types.InlineCompletionContext(
            trigger_kind=types.InlineCompletionTriggerKind.Automatic
        ),
    )
    return text, params


def run_naive(replays: list[Replay], completer: Any, max_tokens: int) -> VariantResult:
    """transformers `generate` on the full prompt, every time, stopping at a newline."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    model, tokenizer = completer.engine.backend.model, completer.tokenizer

    class NewlineStop(StoppingCriteria):
        def __init__(self, prompt_length: int) -> None:
            self.prompt_length = prompt_length

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            text = tokenizer.decode(input_ids[0, self.prompt_length :])
            return torch.tensor([("\n" in text)], device=input_ids.device)

    result = VariantResult("naive")
    prompt_tokens = 0
    for replay in replays:
        for text, cursor in replay.documents():
            started = time.perf_counter()
            prompt = completer.prompt_for(text[:cursor], text[cursor:])
            ids = torch.tensor([tokenizer.encode(prompt, add_special_tokens=False)])
            with torch.inference_mode():
                model.generate(
                    ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=max_tokens,
                    do_sample=False,
                    stopping_criteria=StoppingCriteriaList([NewlineStop(ids.shape[1])]),
                    pad_token_id=tokenizer.eos_token_id,
                )
            result.latencies_ms.append((time.perf_counter() - started) * 1000)
            prompt_tokens += ids.shape[1]
    result.extra = {"prompt_tokens_mean": round(prompt_tokens / max(len(result.latencies_ms), 1))}
    return result


def run_llama_cpp(
    replays: list[Replay], completer: Any, gguf: Path, max_tokens: int
) -> VariantResult | None:
    """llama.cpp on the same GGUF file and prompts, its prompt cache on; None if not installed."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    llm = Llama(model_path=str(gguf), n_ctx=4096, verbose=False)
    result = VariantResult("llama.cpp")
    for replay in replays:
        for text, cursor in replay.documents():
            started = time.perf_counter()
            prompt = completer.prompt_for(text[:cursor], text[cursor:])
            llm(prompt, max_tokens=max_tokens, temperature=0.0, stop=["\n"])
            result.latencies_ms.append((time.perf_counter() - started) * 1000)
    return result


def bench_latency(
    files: list[Path],
    *,
    model: str | None,
    adapter: str | None = None,
    max_tokens: int = 16,
    steps: int = 40,
    naive: bool = True,
    engine: str = "local",
    local: bool = True,
) -> dict[str, Any]:
    """Run every available variant over the typing replays of `files`; return the report.

    With a remote `engine`, `ours` runs on it and `local` (unless `local` is False)
    on the local engine; the naive and llama.cpp baselines always run locally.
    """
    from lsp_server.model.loading import DEFAULT_MODEL, load_model
    from lsp_server.model.wiring import build_completer

    replays = [typing_replay(str(f), f.read_text(), max_steps=steps) for f in files]
    remote = engine != "local"
    loaded = load_model(model, adapter=adapter) if naive or not remote else None
    spec = model or (loaded.source.spec if loaded else DEFAULT_MODEL)
    variants = [asyncio.run(run_ours(replays, spec, adapter, max_tokens, engine))]
    if remote and local:
        variants.append(asyncio.run(run_ours(replays, spec, adapter, max_tokens, name="local")))
    if naive and loaded is not None:
        completer = build_completer(loaded)
        variants.append(run_naive(replays, completer, max_tokens))
        gguf = loaded.source.path
        if gguf is not None and gguf.suffix == ".gguf" and not adapter:
            llama = run_llama_cpp(replays, completer, gguf, max_tokens)
            if llama is not None:
                variants.append(llama)
    report: dict[str, Any] = {v.name: v.summary() for v in variants}
    for other in ("naive", "llama.cpp", "local"):
        if other in report and report[other]["p50_ms"]:
            report[f"ours/{other}"] = {
                q: round(report["ours"][q] / report[other][q], 3) for q in ("p50_ms", "p95_ms")
            }
    report["setup"] = {
        "model": loaded.name if loaded else spec,
        "adapter": adapter,
        "engine": engine,
        "device": loaded.device if loaded else engine,
        "files": [str(f) for f in files],
        "steps_per_file": steps,
        "max_tokens": max_tokens,
    }
    report["_latencies"] = {v.name: v.latencies_ms for v in variants}
    return report


def markdown_table(report: dict[str, Any]) -> str:
    """The report as a markdown table, one row per variant and one per ratio."""
    columns = ("requests", "p50_ms", "p95_ms", "mean_ms")
    rows = ["| variant | requests | p50 ms | p95 ms | mean ms | notes |", "|---" * 6 + "|"]
    for name in ("ours", "local", "naive", "llama.cpp"):
        if name in report:
            r = report[name]
            notes = ", ".join(f"{k}={v}" for k, v in r.items() if k not in columns)
            cells = " | ".join(str(r[c]) for c in columns)
            rows.append(f"| {name} | {cells} | {notes} |")
    for key in ("ours/naive", "ours/llama.cpp", "ours/local"):
        if key in report:
            ratio = report[key]
            rows.append(f"| {key} (ratio) | | {ratio['p50_ms']} | {ratio['p95_ms']} | | |")
    return "\n".join(rows)


def write_outputs(report: dict[str, Any], out: Path) -> list[Path]:
    """latency.json, latency.md and, where matplotlib is installed, latency.png."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "latency.json", out / "latency.md"]
    written[0].write_text(json.dumps(report, indent=2))
    written[1].write_text(markdown_table(report) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot written", file=sys.stderr)
        return written
    latencies = report["_latencies"]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.boxplot(list(latencies.values()), showfliers=True)
    ax.set_xticks(range(1, len(latencies) + 1), list(latencies))
    ax.set_yscale("log")
    ax.set_ylabel("latency per request (ms, log scale)")
    setup = report["setup"]
    ax.set_title(f"Typing replay, {setup['model']} on {setup['device']}")
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=120)
    plt.close(fig)
    written.append(out / "latency.png")
    return written
