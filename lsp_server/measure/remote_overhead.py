"""What the remote path costs: the same prompts through the local engine and a remote server.

For N cursors in a file (line ends spread over it), one Completer layout (the
same window, no token healing) builds each prompt once; then, in turn:

- `local`: the local engine with no KV reuse (what a server without a prefix
  cache does), so both sides prefill the whole prompt;
- `remote`: the `RemoteEngine` against `--engine openai:URL`, streamed;
- `raw_http`: the same request body posted with a bare HTTP client and the
  stream read to its end: the server's own time, without our client.

`remote/raw_http` is our client's overhead; `remote/local` the whole remote
path's against generating in-process. It also counts how many completions are
the same text on both sides (greedy on the same weights should agree).

`--replay` measures instead what a user of a slow engine sees: N lines spread
over the file, each typed halfway (the rest of the line not there yet), asked
for in turn as the server asks, with the settings' budgets (`timeBudgetMs`
from the first token, `firstTokenTimeoutMs` to it, the prompt window sized to
the engine's pace). It reports the share of empty answers by reason (the
status' names), the time to the first token and to the answer, and the windows
chosen. `--before` replays as the server did before the first token had its
own bound: the whole window every time, the first token due within
`timeBudgetMs`.

Usage:
    codetailor bench remote --model /path/to/model-dir --engine openai:http://127.0.0.1:8000
    codetailor bench remote --model DIR --engine openai:URL --replay --file some/real/file.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx2

from lsp_server.session.counts import EMPTY_FOR_STOP
from lsp_server.session.settings import Settings, parse_engine

DEFAULT_FILE = Path(__file__).resolve().parents[1] / "completion" / "completer.py"


def cursors(text: str, n: int) -> list[int]:
    """Ends of N lines spread evenly over `text`."""
    ends = [text.index("\n", len(text) * (i + 1) // (n + 1)) for i in range(n)]
    return sorted(set(ends))


def measure(model: str, url: str, file: Path, n: int, max_tokens: int) -> dict[str, Any]:
    from lsp_server.completion.completer import Completer
    from lsp_server.model.factory import load_completers
    from lsp_server.model.remote import RemoteEngine
    from lsp_server.spec import ModelSpec

    held = load_completers(ModelSpec(model=model), reuse=False)
    loaded, base = held.model, held.completer
    window = base.window_tokens
    # The remote path cannot heal tokens: compare like with like.
    local = Completer(
        base.engine, loaded.tokenizer, base.format, window_tokens=window, token_healing=False
    )
    remote = load_completers(ModelSpec(model=model, engine=url), window=window).completer
    engine = remote.engine
    assert isinstance(engine, RemoteEngine)
    text = file.read_text()
    client = httpx2.Client(timeout=120)
    rows: dict[str, list[float]] = {"local": [], "remote": [], "raw_http": []}
    same = 0
    for cursor in cursors(text, n):
        ours = local.complete(text, cursor, max_tokens=max_tokens, mode="line")
        theirs = remote.complete(text, cursor, max_tokens=max_tokens, mode="line")
        ids = loaded.tokenizer.encode(theirs.prompt, add_special_tokens=False)
        started = time.monotonic()
        with client.stream("POST", engine.url, json=engine._body(ids, max_tokens)) as r:
            for _ in r.iter_lines():
                pass
        rows["raw_http"].append((time.monotonic() - started) * 1000)
        rows["local"].append(ours.generation.latency_ms)
        rows["remote"].append(theirs.generation.latency_ms)
        same += ours.text == theirs.text
    p50 = {k: statistics.median(v) for k, v in rows.items()}
    return {
        "model": loaded.name,
        "engine": url,
        "requests": len(rows["local"]),
        "window_tokens": window,
        "same_text": same,
        **{f"{k}_p50_ms": round(v, 1) for k, v in p50.items()},
        "remote/local": round(p50["remote"] / p50["local"], 3),
        "remote/raw_http": round(p50["remote"] / p50["raw_http"], 3),
        "remote_status": engine.status(),
    }


def half_typed_lines(text: str, n: int) -> list[tuple[str, int]]:
    """N lines of code spread over `text`, each typed halfway: (the text as it is then,
    the cursor at the end of what was typed)."""
    lines = text.splitlines(keepends=True)
    code = [i for i, line in enumerate(lines) if len(line.strip()) >= 12]
    picked = sorted({code[len(code) * (k + 1) // (n + 1)] for k in range(n)}) if code else []
    out = []
    for number in picked:
        line = lines[number].rstrip("\n")
        cut = len(line) - len(line.lstrip()) + len(line.strip()) // 2
        before = "".join(lines[:number]) + line[:cut]
        out.append((before + "\n" + "".join(lines[number + 1 :]), len(before)))
    return out


def replay(
    model: str, url: str, file: Path, n: int, settings: Settings, *, before: bool = False
) -> dict[str, Any]:
    """Empty answers by reason, time to first token and to answer, windows: see --replay."""
    from lsp_server.model.remote import RemoteEngine
    from lsp_server.model.wiring import build_remote_completer

    completer, _ = build_remote_completer(url, model=model)
    engine = completer.engine
    assert isinstance(engine, RemoteEngine)
    budget = settings.time_budget_ms / 1000
    first_bound = budget if before else settings.first_token_timeout_ms / 1000
    if before:
        completer.window_limit = None
    engine.generate([1], max_new_tokens=1)  # the server loads the model: not a request's time
    reasons: Counter[str] = Counter()
    first_ms, answer_ms, windows, prompts = [], [], [], []
    for text, offset in half_typed_lines(file.read_text(), n):
        windows.append(engine.window_for(None if before else first_bound))
        started = time.monotonic()
        done = completer.complete(
            text,
            offset,
            max_tokens=settings.max_tokens,
            mode=settings.mode,
            time_budget=budget,
            prefill_budget=first_bound,
        )
        answer_ms.append((time.monotonic() - started) * 1000)
        g = done.generation
        prompts.append(g.prompt_tokens)
        if g.tokens:
            first_ms.append(g.prefill_ms)
        reason = EMPTY_FOR_STOP.get(g.stop_reason, "empty_generation")
        reasons["answered" if done.text else reason] += 1
    total = sum(reasons.values()) or 1
    return {
        "mode": "before" if before else "after",
        "requests": sum(reasons.values()),
        "shares": {k: round(v / total, 3) for k, v in sorted(reasons.items())},
        "first_token_ms_p50": round(statistics.median(first_ms), 1) if first_ms else None,
        "answer_ms_p50": round(statistics.median(answer_ms), 1) if answer_ms else None,
        "prompt_tokens_p50": statistics.median(prompts) if prompts else None,
        "windows": dict(Counter(windows)),
        "settings": {
            "timeBudgetMs": settings.time_budget_ms,
            "firstTokenTimeoutMs": first_bound * 1000,
        },
        "remote_status": engine.status(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="codetailor bench remote",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model", required=True, help="the model the server serves, by the same name"
    )
    parser.add_argument("--engine", required=True, metavar="openai:URL")
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE, help="the document")
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument(
        "--replay", action="store_true", help="half-typed lines with the default budgets"
    )
    parser.add_argument(
        "--before", action="store_true", help="with --replay: the whole window, one bound"
    )
    args = parser.parse_args(argv)
    url = parse_engine(args.engine)
    if url is None:
        parser.error("--engine must be openai:http(s)://HOST:PORT")
    if args.replay:
        result = replay(args.model, url, args.file, args.requests, Settings(), before=args.before)
    else:
        result = measure(args.model, url, args.file, args.requests, args.max_tokens)
    print(json.dumps(result, indent=2))
    return 0
