"""`codetailor bench latency`: replay typing through the real server and through baselines.

Variants, all on the same model, the same documents and the same prompt text:
- `ours`: `codetailor serve` in a subprocess, driven over LSP (didChange, then
  textDocument/inlineCompletion after every word), with KV prefix reuse and
  typing-through; the time is the client's round trip.
- `naive`: the same model calling transformers' `generate` on the full prompt
  for every request: no reuse, no typing-through.
- `llama.cpp`: where `llama-cpp-python` is installed and the model is a GGUF
  file, llama.cpp on that file with its prompt cache (what llama.vscode uses).

Single-line completions everywhere, so the variants do the same work.

Two scenarios: the typing replay above, and cold open: each of a few places
per file in a freshly opened document, first request only, with the server's
default settings (its time budget included), reporting the share of non-empty
answers and the time to the first answer. Every variant reports decode ms per
token and tokens per model forward (1 without drafted tokens).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsp_server.measure.quality.metrics import percentile
from lsp_server.measure.replay import Replay, typing_replay

# Tokens a cold-open baseline may generate: the server's default `maxTokens`.
COLD_MAX_TOKENS = 64


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


class _Server:
    """`codetailor serve` in a subprocess, driven over LSP as an editor would."""

    def __init__(
        self,
        name: str,
        model: str,
        adapter: str | None,
        tree: Path | None = None,
        dtype: str | None = None,
        *,
        engine: str = "local",
        client_name: str = "codetailor-bench",
        root: Path | None = None,
    ) -> None:
        """`tree`: run the server of another checkout of Codetailor (a before/after run);
        `engine`: `local` or `openai:URL`; the client introduces itself as `client_name`,
        in the workspace `root` (None: no workspace)."""
        from pygls.lsp.client import LanguageClient

        self.name = name
        self.command = [sys.executable, "-m", "lsp_server.cli", "serve", "--model", model]
        if adapter:
            self.command += ["--adapter", adapter]
        if dtype:
            self.command += ["--dtype", dtype]
        if engine != "local":
            self.command += ["--engine", engine]
        self.client_name, self.root = client_name, root
        # `python -m` puts the working directory first on sys.path: run in the tree.
        self.cwd = str(tree.resolve()) if tree is not None else None
        self.env = os.environ | {"PYTHONPATH": self.cwd} if self.cwd else None
        self.client = LanguageClient(client_name, "1")
        self.result, self.counts = VariantResult(name), _EngineCounts()
        self.answered = 0

    async def start(self, options: dict[str, Any]) -> None:
        from lsprotocol import types

        await self.client.start_io(*self.command, env=self.env, cwd=self.cwd)
        await self.client.initialize_async(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(),
                initialization_options=options,
                client_info=types.ClientInfo(name=self.client_name),
                root_uri=self.root.resolve().as_uri() if self.root else None,
            )
        )
        self.client.initialized(types.InitializedParams())
        while (state := await self.status())["state"] == "loading":
            await asyncio.sleep(0.2)
        if state["state"] != "ready":
            raise RuntimeError(f"the server could not load the model: {state.get('error')}")

    async def status(self) -> dict[str, Any]:
        from lsprotocol import types

        answer = await self.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="codetailor.status")
        )
        return answer if isinstance(answer, dict) else {}

    def open(self, uri: str, text: str) -> None:
        from lsprotocol import types

        item = types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=item))

    def insert(self, uri: str, version: int, text: str, offset: int, typed: str) -> None:
        from lsprotocol import types

        line, char = _position(text, offset)
        where = types.Position(line=line, character=char)
        change = types.TextDocumentContentChangePartial(
            range=types.Range(start=where, end=where), text=typed
        )
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[change],
            )
        )

    async def complete(self, uri: str, text: str, cursor: int) -> tuple[float, str]:
        """(round trip in ms, the first item's text or "")."""
        from lsprotocol import types

        line, char = _position(text, cursor)
        params = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=line, character=char),
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Automatic
            ),
        )
        started = time.perf_counter()
        answer = await self.client.text_document_inline_completion_async(params)
        elapsed = (time.perf_counter() - started) * 1000
        items: Any = getattr(answer, "items", answer) or []
        first = items[0].insert_text if items else ""
        return elapsed, first if isinstance(first, str) else first.value

    async def stop(self) -> None:
        try:
            await self.client.shutdown_async(None)
            self.client.exit(None)
        finally:
            await self.client.stop()


@asynccontextmanager
async def server_session(
    model: str,
    adapter: str | None,
    options: dict[str, Any],
    name: str = "codetailor-bench",
    engine: str = "local",
    root: Path | None = None,
    dtype: str | None = None,
) -> AsyncIterator[tuple[Any, Callable[[], Awaitable[dict[str, Any]]]]]:
    """`codetailor serve` in a subprocess, initialized with `options` and its model loaded:
    yields the pygls client and a function that asks for `codetailor.status`. The client
    introduces itself as `name`, in the workspace `root` (None: no workspace)."""
    server = _Server(name, model, adapter, dtype=dtype, engine=engine, client_name=name, root=root)
    try:
        await server.start(options)
        yield server.client, server.status
    finally:
        await server.stop()


@dataclass
class _EngineCounts:
    """The engine's counts over the requests that ran the model (from `lastGeneration`)."""

    model_runs: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    generated: int = 0
    forwards: int = 0
    decoded: int = 0  # tokens that came from decode steps (all but each run's first)
    decode_ms: float = 0.0
    last_request: Any = None

    def add(self, generation: dict[str, Any]) -> None:
        if not generation or generation.get("request") == self.last_request:
            return  # answered without the model (typing-through)
        self.last_request = generation.get("request")
        self.model_runs += 1
        self.prompt_tokens += generation.get("prompt_tokens", 0)
        self.cached_tokens += generation.get("cached_tokens", 0)
        generated = generation.get("generated_tokens", 0)
        self.generated += generated
        # Servers before drafting did not report forwards: one per token.
        self.forwards += generation.get("forwards", generated)
        self.decoded += max(generated - 1, 0)
        self.decode_ms += generation.get("decode_ms", 0.0)

    def summary(self) -> dict[str, Any]:
        share = self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0
        return {
            "model_runs": self.model_runs,
            "cached_token_share": round(share, 3),
            "decode_tokens_per_s": (
                round(self.decoded / (self.decode_ms / 1000), 1) if self.decode_ms else 0
            ),
            "decode_ms_per_token": round(self.decode_ms / self.decoded, 1) if self.decoded else 0,
            "tokens_per_forward": (
                round(self.generated / self.forwards, 3) if self.forwards else 0
            ),
        }


async def run_typing(
    replays: list[Replay], servers: list[_Server], options: dict[str, Any], naive: Any = None
) -> list[VariantResult]:
    """The typing replay: didChange, then a completion, after each word.

    The servers (and `naive`, a `NaiveGenerate`) take turns request by request,
    so that the load of a shared machine falls on all of them alike.
    """
    try:
        for server in servers:
            await server.start(options)
        for n, replay in enumerate(replays):
            uri = Path(replay.path).resolve().as_uri() + f"#{n}"
            text = replay.initial
            for server in servers:
                server.open(uri, text)
            for version, step in enumerate(replay.steps, start=2):
                for server in servers:
                    server.insert(uri, version, text, step.offset, step.typed)
                text = text[: step.offset] + step.typed + text[step.offset :]
                await _ask_all(servers, uri, text, step.cursor, naive)
        for server in servers:
            final = await server.status()
            server.result.extra = server.counts.summary() | {
                "typing_through_hits": final.get("typingThroughHits", 0)
            }
    finally:
        for server in servers:
            await server.stop()
    return [s.result for s in servers] + ([naive.finish()] if naive else [])


async def _ask_all(servers: list[_Server], uri: str, text: str, cursor: int, naive: Any) -> None:
    for server in servers:
        elapsed, answer = await server.complete(uri, text, cursor)
        server.result.latencies_ms.append(elapsed)
        server.answered += bool(answer.strip())
        server.counts.add((await server.status()).get("lastGeneration") or {})
    if naive is not None:
        naive.run(text, cursor)


def cold_places(path: Path, text: str, count: int) -> list[tuple[str, int]]:
    """`count` cursors spread over the file, each just after the first word of a long line.

    Where a user opening the file might start typing: the rest of that line is
    to be completed, the rest of the file stays as it is.
    """
    lines = text.split("\n")
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    candidates = [i for i, line in enumerate(lines) if len(line.strip()) >= 12]
    places = []
    for k in range(count):
        if not candidates:
            break
        i = candidates[min(len(candidates) - 1, (k + 1) * len(candidates) // (count + 1))]
        word = re.match(r"\s*\S+\s", lines[i])
        column = word.end() if word and word.end() < len(lines[i]) else len(lines[i]) // 2
        places.append((text, starts[i] + column))
    return places


async def run_cold(
    places: list[tuple[str, int]], servers: list[_Server], naive: Any = None
) -> list[VariantResult]:
    """Each place in a freshly opened document, first request only, default settings."""
    try:
        for server in servers:
            await server.start({})
        for n, (text, cursor) in enumerate(places):
            uri = f"file:///cold/place{n}.py"
            for server in servers:
                server.open(uri, text)
            await _ask_all(servers, uri, text, cursor, naive)
        for server in servers:
            share = server.answered / max(len(places), 1)
            server.result.extra = {"non_empty_share": round(share, 3)} | server.counts.summary()
    finally:
        for server in servers:
            await server.stop()
    return [s.result for s in servers] + ([naive.finish()] if naive else [])


@dataclass
class _DecodeClock:
    """Decode ms per token of baselines: the time from first to last generated token."""

    decode_s: float = 0.0
    decoded: int = 0

    def add(self, stamps: list[float]) -> None:
        if len(stamps) > 1:
            self.decode_s += stamps[-1] - stamps[0]
            self.decoded += len(stamps) - 1

    def summary(self) -> dict[str, Any]:
        per_token = self.decode_s * 1000 / self.decoded if self.decoded else 0
        return {"decode_ms_per_token": round(per_token, 1), "tokens_per_forward": 1.0}


class NaiveGenerate:
    """transformers `generate` on the full prompt, every time, stopping at a newline."""

    def __init__(self, completer: Any, max_tokens: int) -> None:
        self.completer, self.max_tokens = completer, max_tokens
        self.result, self.clock = VariantResult("naive"), _DecodeClock()
        self.prompt_tokens = self.answered = 0

    def run(self, text: str, cursor: int) -> None:
        import torch
        from transformers import StoppingCriteriaList

        model, tokenizer = self.completer.engine.backend.model, self.completer.tokenizer
        started = time.perf_counter()
        prompt = self.completer.prompt_for(text[:cursor], text[cursor:])
        ids = torch.tensor([tokenizer.encode(prompt, add_special_tokens=False)])
        stop = _newline_stop(tokenizer, ids.shape[1])
        with torch.inference_mode():
            model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=self.max_tokens,
                do_sample=False,
                stopping_criteria=StoppingCriteriaList([stop]),
                pad_token_id=tokenizer.eos_token_id,
            )
        self.result.latencies_ms.append((time.perf_counter() - started) * 1000)
        self.prompt_tokens += ids.shape[1]
        self.clock.add(stop.stamps)
        self.answered += bool(stop.text.split("\n")[0].strip())

    def finish(self) -> VariantResult:
        runs = max(len(self.result.latencies_ms), 1)
        self.result.extra = self.clock.summary() | {
            "prompt_tokens_mean": round(self.prompt_tokens / runs),
            "non_empty_share": round(self.answered / runs, 3),
        }
        return self.result


def _newline_stop(tokenizer: Any, prompt_length: int) -> Any:
    import torch
    from transformers import StoppingCriteria

    class NewlineStop(StoppingCriteria):
        """Stops at a newline; called once per generated token, so it also keeps time."""

        def __init__(self) -> None:
            self.stamps: list[float] = []
            self.text = ""

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            self.stamps.append(time.perf_counter())
            self.text = tokenizer.decode(input_ids[0, prompt_length:])
            return torch.tensor([("\n" in self.text)], device=input_ids.device)

    return NewlineStop()


def run_llama_cpp(
    documents: list[tuple[str, int]], completer: Any, gguf: Path, max_tokens: int
) -> VariantResult | None:
    """llama.cpp on the same GGUF file and prompts, its prompt cache on; None if not installed."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    llm = Llama(model_path=str(gguf), n_ctx=4096, verbose=False)
    result, clock = VariantResult("llama.cpp"), _DecodeClock()
    answered = 0
    for text, cursor in documents:
        started = time.perf_counter()
        prompt = completer.prompt_for(text[:cursor], text[cursor:])
        stamps, pieces = [], []
        for chunk in llm(prompt, max_tokens=max_tokens, temperature=0.0, stop=["\n"], stream=True):
            stamps.append(time.perf_counter())
            pieces.append(chunk["choices"][0]["text"])
        result.latencies_ms.append((time.perf_counter() - started) * 1000)
        clock.add(stamps)
        answered += bool("".join(pieces).strip())
    result.extra = clock.summary() | {
        "non_empty_share": round(answered / max(len(documents), 1), 3)
    }
    return result


def bench_latency(
    files: list[Path],
    *,
    model: str | None,
    adapter: str | None = None,
    max_tokens: int = 16,
    steps: int = 40,
    naive: bool = True,
    cold_places_per_file: int = 5,
    baseline_tree: Path | None = None,
    dtypes: Sequence[str] = (),
    engine: str = "local",
    local: bool = True,
) -> dict[str, Any]:
    """Run every available variant over the typing replays of `files`, and the cold-open
    scenario over `cold_places_per_file` places of each; return the report.

    `baseline_tree`, another checkout of Codetailor, adds its server as the
    variant `before`, taking turns with ours request by request; each of
    `dtypes` adds our server with that `--dtype` as `ours-DTYPE`. With a remote
    `engine`, `ours` runs on it and `local` (unless `local` is False) on the local
    engine; the naive and llama.cpp baselines always run locally.
    """
    from lsp_server.model.loading import DEFAULT_MODEL, load_model
    from lsp_server.model.wiring import build_completer

    replays = [typing_replay(str(f), f.read_text(), max_steps=steps) for f in files]
    remote = engine != "local"
    loaded = load_model(model, adapter=adapter) if naive or not remote else None
    completer = build_completer(loaded) if loaded is not None else None
    spec = model or (loaded.source.spec if loaded else DEFAULT_MODEL)
    gguf = loaded.source.path if loaded else None
    use_llama = gguf is not None and gguf.suffix == ".gguf" and not adapter
    gguf_file = gguf if gguf is not None else Path()

    def servers() -> list[_Server]:
        ours = [_Server("ours", spec, adapter, engine=engine)]
        ours += [_Server("local", spec, adapter)] if remote and local else []
        ours += [_Server(f"ours-{d}", spec, adapter, dtype=d) for d in dtypes]
        return ours + ([_Server("before", spec, adapter, baseline_tree)] if baseline_tree else [])

    typed = [d for replay in replays for d in replay.documents()]
    naive = naive and completer is not None
    baseline = NaiveGenerate(completer, max_tokens) if naive else None
    options = {"maxTokens": max_tokens, "multiline": "never"}
    variants = asyncio.run(run_typing(replays, servers(), options, baseline))
    if use_llama and (llama := run_llama_cpp(typed, completer, gguf_file, max_tokens)) is not None:
        variants.append(llama)
    report = _with_ratios({v.name: v.summary() for v in variants})
    places = [p for f in files for p in cold_places(f, f.read_text(), cold_places_per_file)]
    if places:
        # Default settings, as a new user has them: the server's own token budget.
        baseline = NaiveGenerate(completer, COLD_MAX_TOKENS) if naive else None
        cold = asyncio.run(run_cold(places, servers(), baseline))
        if use_llama and (llama := run_llama_cpp(places, completer, gguf_file, COLD_MAX_TOKENS)):
            cold.append(llama)
        report["cold_open"] = _with_ratios({v.name: v.summary() for v in cold})
    report["setup"] = {
        "model": loaded.name if loaded else spec,
        "adapter": adapter,
        "engine": engine,
        "device": loaded.device if loaded else engine,
        "files": [str(f) for f in files],
        "steps_per_file": steps,
        "max_tokens": max_tokens,
        "cold_places": len(places),
        "baseline_tree": str(baseline_tree) if baseline_tree else None,
    }
    report["_latencies"] = {v.name: v.latencies_ms for v in variants}
    return report


def _with_ratios(report: dict[str, Any]) -> dict[str, Any]:
    variants = [name for name in report if name.startswith("ours")]
    for name in variants:
        for other in ("before", "local", "naive", "llama.cpp"):
            if other in report and report[other]["p50_ms"]:
                report[f"{name}/{other}"] = {
                    q: round(report[name][q] / report[other][q], 3) for q in ("p50_ms", "p95_ms")
                }
    return report


def markdown_table(report: dict[str, Any]) -> str:
    """The report as markdown tables (typing replay, cold open): a row per variant and ratio."""
    tables = [_table(report)]
    if "cold_open" in report:
        tables.append("Cold open (first request in a freshly opened file):\n")
        tables.append(_table(report["cold_open"]))
    return "\n".join(tables)


def _table(report: dict[str, Any]) -> str:
    columns = ("requests", "p50_ms", "p95_ms", "mean_ms")
    rows = ["| variant | requests | p50 ms | p95 ms | mean ms | notes |", "|---" * 6 + "|"]
    for name, r in report.items():
        if "/" not in name and isinstance(r, dict) and "requests" in r:
            notes = ", ".join(f"{k}={v}" for k, v in r.items() if k not in columns)
            cells = " | ".join(str(r[c]) for c in columns)
            rows.append(f"| {name} | {cells} | {notes} |")
    for key, ratio in report.items():
        if "/" in key:
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
