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
answers and the time to the first answer. The cold-open request comes as our
editor clients make it: `didOpen`, `codetailor/cursor` where the cursor comes to
rest, a person's pause, the first keystroke, the request; `ours-at-once` (with
`cold_at_once`) asks at once after `didOpen` instead. Every variant reports
decode ms per token and tokens per model forward (1 without drafted tokens).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from lsp_server.measure.client import ServerProcess, serve_command
from lsp_server.measure.quality.metrics import percentile
from lsp_server.measure.replay import Replay, typing_replay
from lsp_server.measure.tail import RequestFacts, tail_report

# Tokens a cold-open baseline may generate: the server's default `maxTokens`.
COLD_MAX_TOKENS = 64
# From the editor's `codetailor/cursor` (sent once the cursor has rested 150 ms) to the
# first keystroke, which the request follows: the Keystroke-Level Model's hand moving
# from mouse to keys (0.4 s) plus mental preparation (1.35 s) (Card, Moran and Newell
# 1980), less the editors' 150 ms debounce.
COLD_PAUSE_MS = 1600


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


class _Server(ServerProcess):
    """`codetailor serve` in a subprocess, driven over LSP as an editor would: one variant."""

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
        cold_request: str = "cursor",
    ) -> None:
        """`tree`: run the server of another checkout of Codetailor (a before/after run);
        `engine`: `local` or `openai:URL`; the client introduces itself as `client_name`,
        in the workspace `root` (None: no workspace); `cold_request`: how its cold-open
        request comes (`run_cold`: "cursor" or "at-once")."""
        # `python -m` puts the working directory first on sys.path: run in the tree.
        cwd = str(tree.resolve()) if tree is not None else None
        super().__init__(
            serve_command(model, adapter=adapter, dtype=dtype, engine=engine),
            client_name=client_name,
            cwd=cwd,
            env=os.environ | {"PYTHONPATH": cwd} if cwd else None,
        )
        self.name, self.root = name, root
        self.cold_request = cold_request
        self.result, self.counts = VariantResult(name), _EngineCounts()
        self.answered = 0
        self.requests: list[RequestFacts] = []  # the typing replay's, in order
        self.last_status: dict[str, Any] = {}

    async def start(self, options: dict[str, Any], root: Path | None = None) -> None:
        await super().start(options, root or self.root)


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
    replays: list[Replay],
    servers: list[_Server],
    options: dict[str, Any],
    naive: Any = None,
    max_tokens: int = 16,
    pause_s: float = 0.0,
) -> list[VariantResult]:
    """The typing replay: didChange, then a completion, after each word; `pause_s` after
    each answer, as a typist takes to type the next word (0: at once), in which the
    server's background work (the next suggestion, warming) may run.

    The servers (and `naive`, a `NaiveGenerate`) take turns request by request,
    so that the load of a shared machine falls on all of them alike. Each server
    gets its didOpen and didChange just before its own request, as in a run of
    it alone: sent to all servers at once, they would start the later servers'
    warming (session/ahead.py) during the earlier servers' requests, and the
    later servers would find more of their prompts cached (0.98 against 0.91 of
    the same code in the second and the first place).

    Each server's result says what its requests waited for (`tail`, see
    measure/tail.py; `max_tokens` is the requests' limit).
    """
    try:
        for server in servers:
            await server.start(options)
            server.last_status = await server.status()
        for n, replay in enumerate(replays):
            uri = Path(replay.path).resolve().as_uri() + f"#{n}"
            previous = replay.initial
            steps = zip(replay.steps, replay.truths(), strict=True)
            for version, (step, truth) in enumerate(steps, start=2):
                text = previous[: step.offset] + step.typed + previous[step.offset :]
                for server in servers:
                    if version == 2:
                        server.open(uri, previous)
                    server.insert(uri, version, previous, step.offset, step.typed)
                    await _ask(server, uri, text, step.cursor, first=version == 2, truth=truth)
                    if pause_s:
                        await asyncio.sleep(pause_s)
                if naive is not None:
                    naive.run(text, step.cursor)
                previous = text
        for server in servers:
            final = await server.status()
            server.result.extra = server.counts.summary() | {
                "typing_through_hits": final.get("typingThroughHits", 0),
                "tail": tail_report(server.requests, max_tokens),
            }
    finally:
        for server in servers:
            await server.stop()
    return [s.result for s in servers] + ([naive.finish()] if naive else [])


async def _ask(
    server: _Server,
    uri: str,
    text: str,
    cursor: int,
    *,
    first: bool = False,
    truth: str | None = None,
) -> dict[str, Any]:
    """One completion request, recorded in the server's results (with its facts, `first`
    saying whether it is its document's first request, `truth` what the file says from
    the cursor on); its status after."""
    answer = await server.complete(uri, text, cursor)
    server.result.latencies_ms.append(answer.elapsed_ms)
    server.answered += bool(answer.text.strip())
    status = await server.status()
    server.counts.add(status.get("lastGeneration") or {})
    facts = RequestFacts.from_status(answer.elapsed_ms, first, server.last_status, status, truth)
    server.requests.append(facts)
    server.last_status = status
    return status


@dataclass(frozen=True)
class ColdPlace:
    """A place in a file a user just opened: `text` once they typed their first keystroke,
    `text[cursor - 1]`, with the cursor after it; the rest of that line is cut off."""

    text: str
    cursor: int

    @property
    def opened(self) -> str:
        """The document as opened, before the keystroke."""
        return self.text[: self.cursor - 1] + self.text[self.cursor :]


def cold_places(path: Path, text: str, count: int) -> list[ColdPlace]:
    """`count` places spread over the file, each in a long line just after its first word.

    Where a user opening the file might start writing that line: the rest of
    the line is cut off (a completion is to write it), the rest of the file
    stays as it is, and the first keystroke is the line's next character.
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
        word = re.match(r"\s*\S+\s+", lines[i])
        column = word.end() if word and word.end() < len(lines[i]) else len(lines[i]) // 2
        cursor = starts[i] + column + 1  # after the keystroke
        places.append(ColdPlace(text[:cursor] + text[starts[i] + len(lines[i]) :], cursor))
    return places


def interleave(groups: list[list[ColdPlace]]) -> list[ColdPlace]:
    """One place of each file in turn, so that consecutive places are in different files."""
    return [p for row in itertools.zip_longest(*groups) for p in row if p is not None]


async def run_cold(
    places: list[ColdPlace],
    servers: list[_Server],
    naive: Any = None,
    pause_ms: float = COLD_PAUSE_MS,
    options: dict[str, Any] | None = None,
) -> list[VariantResult]:
    """Each place in a freshly opened document, first request only, default settings
    (but for the client's `options`).

    The servers take turns place by place. Each closes the document once it
    answered, which stops the work it does ahead there (warming, the next suggestion).
    """
    try:
        for server in servers:
            await server.start(options or {})
        before = {s.name: await s.status() for s in servers}
        for n, place in enumerate(places):
            uri = f"file:///cold/place{n}.py"
            for server in servers:
                await _first_request(server, uri, place, pause_ms)
            if naive is not None:
                naive.run(place.text, place.cursor)
        for server in servers:
            share = server.answered / max(len(places), 1)
            now, then = await server.status(), before[server.name]
            empty, cursors = _since(now, then, "emptyAnswers"), _since(now, then, "ahead")
            server.result.extra = (
                {"request": server.cold_request, "non_empty_share": round(share, 3)}
                | server.counts.summary()
                | {"empty_reasons": {k: v for k, v in empty.items() if v}}
                | {"cursor_reports": cursors.get("cursors", 0)}
            )
    finally:
        for server in servers:
            await server.stop()
    return [s.result for s in servers] + ([naive.finish()] if naive else [])


def _since(now: dict[str, Any], then: dict[str, Any], key: str) -> dict[str, int]:
    """The status counts under `key` (e.g. "emptyAnswers") added between `then` and `now`."""
    earlier = then.get(key) or {}
    return {k: v - earlier.get(k, 0) for k, v in (now.get(key) or {}).items()}


async def _first_request(server: _Server, uri: str, place: ColdPlace, pause_ms: float) -> None:
    """Open `place`'s document and ask there once, the way `server.cold_request` says.

    "cursor", what our editor clients do: `didOpen`, `codetailor/cursor` at the
    place, `pause_ms` while the person gets ready to type, the first keystroke
    (`didChange`), the request. "at-once": `didOpen`, keystroke and request at once.
    """
    opened = place.opened
    server.open(uri, opened)
    if server.cold_request == "cursor":
        server.cursor(uri, opened, place.cursor - 1)
        await asyncio.sleep(pause_ms / 1000)
    server.insert(uri, 2, opened, place.cursor - 1, place.text[place.cursor - 1])
    await _ask(server, uri, place.text, place.cursor)
    server.close(uri)


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


def stable_start(text: str, cursor: int, count: Any, budget: int) -> int:
    """The earliest line start from which `text` up to `cursor` holds at most `budget`
    tokens (`count` counts them); the cursor's line start if even that line holds more."""
    starts = [0] + [m.end() for m in re.finditer("\n", text[:cursor])]
    low, high = 0, len(starts) - 1  # the answer lies in starts[low..high]
    while low < high:
        middle = (low + high) // 2
        if count(text[starts[middle] : cursor]) <= budget:
            high = middle
        else:
            low = middle + 1
    return starts[low]


class StableWindow:
    """The prompt window llama.vscode's user has with llama-server, for one document.

    llama.vscode sends the same lines above the cursor while the user types,
    and llama-server's cache reuse keeps the prompt's beginning computed, so
    each request prefills only what was typed. Here the window's start is
    chosen at a document's first request (a quarter of the window left for
    typing) and kept while the prompt fits the window; llama-cpp-python then
    reuses the common prefix of the previous prompt.
    """

    def __init__(self, completer: Any) -> None:
        self.completer = completer
        self.window = completer.window.window_tokens
        self.start: int | None = None

    def prompt(self, text: str, cursor: int) -> str:
        count = self.completer.window.count
        if self.start is None or count(text[self.start : cursor]) > self.window:
            self.start = stable_start(text, cursor, count, self.window * 3 // 4)
        return self.completer.prompt_for(text[self.start : cursor], text[cursor:])


def run_llama_cpp(
    documents: list[list[tuple[str, int]]], completer: Any, gguf: Path, max_tokens: int
) -> VariantResult | None:
    """llama.cpp on the same GGUF file, its prompt cache on; None if not installed.

    `documents`: each document's (text, cursor) requests in order. Its prompts
    keep their start as a llama.vscode user's do (`StableWindow`), and it reuses
    the longest common token prefix of the previous prompt (its KV cache), as
    llama-server's prompt cache does; it gets as many threads as torch uses for
    ours (llama-cpp-python's default is half the cores).
    """
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    import torch

    threads = torch.get_num_threads()
    llm = Llama(
        model_path=str(gguf), n_ctx=4096, n_threads=threads, n_threads_batch=threads, verbose=False
    )
    result, clock = VariantResult("llama.cpp"), _DecodeClock()
    answered = 0
    requests = []
    for document in documents:
        window = StableWindow(completer)  # one per document, kept over its requests
        requests += [(window, text, cursor) for text, cursor in document]
    for window, text, cursor in requests:
        started = time.perf_counter()
        prompt = window.prompt(text, cursor)
        stamps, pieces = [], []
        # With stream=True the call yields chunks (typed as chunks or one response).
        chunks: Any = llm(prompt, max_tokens=max_tokens, temperature=0.0, stop=["\n"], stream=True)
        for chunk in chunks:
            stamps.append(time.perf_counter())
            pieces.append(chunk["choices"][0]["text"])
        result.latencies_ms.append((time.perf_counter() - started) * 1000)
        clock.add(stamps)
        answered += bool("".join(pieces).strip())
    result.extra = clock.summary() | {"non_empty_share": round(answered / max(len(requests), 1), 3)}
    return result


def _servers(
    spec: str,
    adapter: str | None,
    dtype: str | None,
    engine: str,
    local: bool,
    dtypes: Sequence[str],
    baseline_tree: Path | None,
) -> list[_Server]:
    """The servers the replay takes turns with: `ours` (on `engine`), the local engine
    beside a remote one (if `local`), one per extra dtype, and `before` (another tree)."""
    ours = [_Server("ours", spec, adapter, dtype=dtype, engine=engine)]
    ours += [_Server("local", spec, adapter)] if engine != "local" and local else []
    ours += [_Server(f"ours-{d}", spec, adapter, dtype=d) for d in dtypes]
    return ours + ([_Server("before", spec, adapter, baseline_tree)] if baseline_tree else [])


def _baselines(
    model: str | None, adapter: str | None, dtype: str | None, load: bool
) -> tuple[Any, Any, str, Path | None]:
    """The baselines' model (its weights called directly; None unless `load`, as for a
    remote `ours` alone), a completer over it, our servers' model spec, and the GGUF
    file llama.cpp runs (None: no llama.cpp)."""
    from lsp_server.model.factory import completer_over
    from lsp_server.model.loading import DEFAULT_MODEL

    loaded = _baseline_model(model, adapter, dtype) if load else None
    completer = completer_over(loaded) if loaded is not None else None
    spec = model or (loaded.source.spec if loaded else DEFAULT_MODEL)
    gguf = loaded.source.path if loaded else None
    llama = gguf if gguf is not None and gguf.suffix == ".gguf" and not adapter else None
    return loaded, completer, spec, llama


def _baseline_model(model: str | None, adapter: str | None, dtype: str | None) -> Any:
    """The weights the naive and llama.cpp baselines call directly (a `LoadedModel`)."""
    from lsp_server.model.factory import load_completers
    from lsp_server.model.loading import LoadedModel
    from lsp_server.model.registry import adapter_ref
    from lsp_server.spec import ModelSpec

    held = load_completers(ModelSpec(model=model, dtype=dtype or "auto"), [adapter_ref(adapter)])
    assert isinstance(held.model, LoadedModel)
    return held.model


def _typing(
    replays: list[Replay],
    servers: list[_Server],
    completer: Any,
    naive: bool,
    gguf: Path | None,
    max_tokens: int,
    client: dict[str, Any],
    pause_ms: float = 0.0,
) -> list[VariantResult]:
    """The typing replay through `servers` (told `client`, `pause_ms` between an answer
    and the next word), the naive baseline on `completer` if `naive`, and llama.cpp on
    `gguf` (None: none)."""
    pause_s = max(pause_ms, 0.0) / 1000
    baseline = NaiveGenerate(completer, max_tokens) if naive else None
    options = client | {"maxTokens": max_tokens, "multiline": "never"}
    variants = asyncio.run(run_typing(replays, servers, options, baseline, max_tokens, pause_s))
    typed = [replay.documents() for replay in replays]
    if gguf is not None and (llama := run_llama_cpp(typed, completer, gguf, max_tokens)):
        variants.append(llama)
    return variants


def _at_once(spec: str, adapter: str | None, dtype: str | None, engine: str) -> list[_Server]:
    """The cold open's `ours-at-once`: asked at once after `didOpen`, without a cursor."""
    return [
        _Server("ours-at-once", spec, adapter, dtype=dtype, engine=engine, cold_request="at-once")
    ]


def _setup(loaded: Any, spec: str, dtype: str | None, engine: str) -> dict[str, Any]:
    """The report's model, engine, device and dtype (`loaded`: the baselines' model)."""
    return {
        "model": loaded.name if loaded else spec,
        "engine": engine,
        "device": loaded.device if loaded else engine,
        "dtype": loaded.dtype if loaded else dtype,
    }


def bench_latency(
    files: list[Path],
    *,
    model: str | None,
    adapter: str | None = None,
    max_tokens: int = 16,
    steps: int = 40,
    naive: bool = True,
    cold_places_per_file: int = 5,
    cold_at_once: bool = False,
    cold_pause_ms: float = COLD_PAUSE_MS,
    baseline_tree: Path | None = None,
    dtypes: Sequence[str] = (),
    engine: str = "local",
    local: bool = True,
    dtype: str | None = None,
    bare_client: bool = False,
    pause_ms: float = 0.0,
) -> dict[str, Any]:
    """Run every variant over the typing replays of `files` (`pause_ms` between an answer
    and the next word), and the cold open over `cold_places_per_file` places of each
    (asked `cold_pause_ms` after `codetailor/cursor`; `cold_at_once` adds `ours-at-once`).

    `baseline_tree` (another checkout) adds `before`, taking turns with ours request
    by request; each of `dtypes` adds `ours-DTYPE`; `dtype` is ours' and the naive
    baseline's (None: auto). With a remote `engine`, `ours` runs on it and `local`
    (unless `local` is False) locally; the naive and llama.cpp baselines run locally.
    Servers are asked as our plugins ask (`drawsNextEdits`), or as a `bare_client`.
    """
    replays = [typing_replay(str(f), f.read_text(), max_steps=steps) for f in files]
    loaded, completer, spec, llama = _baselines(model, adapter, dtype, naive or engine == "local")
    naive = naive and completer is not None
    client = {"drawsNextEdits": not bare_client}
    servers = partial(_servers, spec, adapter, dtype, engine, local, dtypes, baseline_tree)
    variants: list[VariantResult] = []
    if steps:  # 0: the cold-open scenario only
        variants = _typing(
            replays, servers(), completer, naive, llama, max_tokens, client, pause_ms
        )
    report = _with_ratios({v.name: v.summary() for v in variants})
    places = interleave([cold_places(f, f.read_text(), cold_places_per_file) for f in files])
    if places:
        cold = servers() + _at_once(spec, adapter, dtype, engine) * cold_at_once
        report["cold_open"] = _cold_open(
            places, cold, completer, naive, llama, cold_pause_ms, client
        )
    report["setup"] = _setup(loaded, spec, dtype, engine) | {
        "adapter": adapter,
        "files": [str(f) for f in files],
        "steps_per_file": steps,
        "max_tokens": max_tokens,
        "cold_places": len(places),
        "cold_pause_ms": cold_pause_ms,
        "baseline_tree": str(baseline_tree) if baseline_tree else None,
        "client": "bare" if bare_client else "plugin (drawsNextEdits)",
        "pause_ms": pause_ms,
    }
    report["_latencies"] = {v.name: v.latencies_ms for v in variants}
    return report


def _cold_open(
    places: list[ColdPlace],
    servers: list[_Server],
    completer: Any,
    naive: bool,
    gguf: Path | None,
    pause_ms: float,
    client: dict[str, Any],
) -> dict[str, Any]:
    """The cold-open report: `servers` (told `client`), the naive baseline on `completer`
    if `naive`, llama.cpp on `gguf` (None: none)."""
    # Default settings, as a new user has them: the server's own token budget.
    baseline = NaiveGenerate(completer, COLD_MAX_TOKENS) if naive else None
    cold = asyncio.run(run_cold(places, servers, baseline, pause_ms, client))
    documents = [[(p.text, p.cursor)] for p in places]
    if gguf is not None and (llama := run_llama_cpp(documents, completer, gguf, COLD_MAX_TOKENS)):
        cold.append(llama)
    return _with_ratios({v.name: v.summary() for v in cold})


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
    tables = [_table(report), *(f"- {line}" for line in tail_lines(report))]
    if "cold_open" in report:
        tables.append("Cold open (first request in a freshly opened file):\n")
        tables.append(_table(report["cold_open"]))
    return "\n".join(tables)


NEVER_RAN = "NEVER RAN THE MODEL (model_runs=0: every answer came without it)"


def never_ran(result: Any) -> bool:
    """True for a variant whose every answer came without running the model (typing-through,
    a cache): its times say nothing about the model's speed."""
    return isinstance(result, dict) and result.get("model_runs") == 0


def table_rows(report: dict[str, Any]) -> list[tuple[Any, ...]]:
    """A row per variant (name, requests, p50, p95, mean, notes), then one per ratio."""
    columns = ("requests", "p50_ms", "p95_ms", "mean_ms")
    rows: list[tuple[Any, ...]] = []
    for name, r in report.items():
        if "/" not in name and isinstance(r, dict) and "requests" in r:
            notes = ", ".join(f"{k}={v}" for k, v in r.items() if k not in (*columns, "tail"))
            notes = f"{NEVER_RAN}; {notes}" if never_ran(r) else notes
            rows.append((name, *(r[c] for c in columns), notes))
    for key, ratio in report.items():
        if "/" in key:
            mine = key.split("/", 1)[0]
            ran = not never_ran(report.get(mine))
            note = "" if ran else f"{mine} never ran the model: not a speed ratio"
            rows.append((f"{key} (ratio)", "", ratio["p50_ms"], ratio["p95_ms"], "", note))
    return rows


def tail_lines(report: dict[str, Any]) -> list[str]:
    """A line per server variant: what its slow tenth waited for, its empty answers by reason."""
    lines = []
    for name, r in report.items():
        if isinstance(r, dict) and (tail := r.get("tail")):
            slow = ", ".join(f"{k} {v}" for k, v in tail["slow_tenth_causes"].items())
            empty = ", ".join(f"{k} {v}" for k, v in tail["empty_answers"].items()) or "none"
            if hid := tail.get("quiet_hid"):
                empty += f" (quiet: {hid['would_be_taken']} of them the typist would have taken)"
            lines.append(
                f"{name}: slow tenth (>= {tail['p90_ms']:,.0f} ms): {slow}; empty answers: {empty}"
            )
    return lines


TABLE_COLUMNS = ("variant", "requests", "p50 ms", "p95 ms", "mean ms", "notes")


def _table(report: dict[str, Any]) -> str:
    rows = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|---" * 6 + "|"]
    for row in table_rows(report):
        rows.append("| " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(rows)


def print_tables(report: dict[str, Any]) -> None:
    """The report as tables on stdout (typing replay, then cold open)."""
    from lsp_server.measure.tables import print_table

    print_table(TABLE_COLUMNS, table_rows(report), title="Typing replay")
    for line in tail_lines(report):
        print(line)
    if "cold_open" in report:
        title = "Cold open (first request in a freshly opened file)"
        print_table(TABLE_COLUMNS, table_rows(report["cold_open"]), title=title)


def write_outputs(report: dict[str, Any], out: Path) -> list[Path]:
    """latency.json, latency.md and, where matplotlib is installed, latency.png."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "latency.json", out / "latency.md"]
    written[0].write_text(json.dumps(report, indent=2))
    written[1].write_text(markdown_table(report) + "\n")
    if not report["_latencies"]:  # no typing replay to plot
        return written
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
    labels = [f"{n}\n(never ran the model)" if never_ran(report.get(n)) else n for n in latencies]
    ax.set_xticks(range(1, len(latencies) + 1), labels)
    ax.set_yscale("log")
    ax.set_ylabel("latency per request (ms, log scale)")
    setup = report["setup"]
    ax.set_title(f"Typing replay, {setup['model']} on {setup['device']}")
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=120)
    plt.close(fig)
    written.append(out / "latency.png")
    return written
