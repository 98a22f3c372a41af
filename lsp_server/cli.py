"""The `codetailor` command line.

stdout carries results only (on `serve --stdio` it is the protocol); logs and
progress go to stderr. A user mistake is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lsp_server import __version__
from lsp_server.errors import CodetailorError
from lsp_server.model import preflight
from lsp_server.repo.files import read_source
from lsp_server.session.documents import LINE_BREAK, line_bounds, offset_at
from lsp_server.session.settings import parse_engine
from lsp_server.spec import ModelSpec

log = logging.getLogger("codetailor")

EXAMPLES = """\
examples:
  codetailor serve                                  # LSP on stdio, default model
  codetailor serve --tcp 127.0.0.1:7070 --model Qwen/Qwen2.5-Coder-1.5B
  codetailor serve --tcp 0.0.0.0:7070 --auth-token-file ~/.codetailor-token   # other machines
  codetailor complete src/app.py:42:17              # complete before column 17 of line 42
  codetailor complete src/app.py:42:17 --json --repeat 2   # the 2nd run reuses the KV cache
  codetailor serve --engine openai:http://gpu-box:8000 --model Qwen/Qwen2.5-Coder-1.5B
  codetailor adapters list                          # adapters registered by finetune
  codetailor feedback stats --plot acceptance.png   # your acceptance rate over time
"""


def _add_model_args(p: argparse.ArgumentParser, *, adapter: str | None = None) -> None:
    p.add_argument("--model", default=None, help="smollm2-135m (default), HF id, dir or .gguf")
    help_text = "a LoRA adapter folder made by finetune, or its registered name"
    if adapter == "auto":
        help_text = (
            "auto (default: the adapter registered for the workspace's repository, picked up "
            "again when a fine-tune registers a new one, else the general adapter shipped for "
            "the default model), none (the base model), or " + help_text
        )
    p.add_argument("--adapter", default=adapter, help=help_text)
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda[:N] or mps")
    p.add_argument(
        "--dtype",
        default="auto",
        help="auto (default), float32, bfloat16, float16, int8 or int4 (CPU)",
    )
    p.add_argument(
        "--trust-remote-code", action="store_true", help="allow a hub model's own Python code"
    )
    p.add_argument(
        "--engine",
        default="local",
        metavar="local|openai:URL",
        help="generate locally (default) or on an OpenAI-compatible server, e.g. "
        "openai:http://gpu-box:8000 (then --model names the base model it serves, for its "
        "tokenizer; --adapter names the adapter it serves)",
    )
    p.add_argument(
        "--api-key-env",
        metavar="NAME",
        help="read the remote engine's API key from $NAME (default: $CODETAILOR_API_KEY)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codetailor",
        description="Local code completion with models tailored to your repository.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"codetailor {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = add_serve(sub)

    complete = sub.add_parser(
        "complete",
        help="complete a file at a position and print the completion",
        description="Complete FILE at LINE:COL (1-based; the cursor stands before COL).",
    )
    complete.add_argument("location", metavar="FILE:LINE:COL")
    _add_model_args(complete, adapter="auto")
    complete.add_argument("--max-tokens", type=int, default=64, help="most tokens to generate")
    complete.add_argument(
        "--mode", choices=("auto", "line", "block"), default="auto", help="how much to complete"
    )
    complete.add_argument("--time-budget", type=float, default=None, help="seconds, at most")
    complete.add_argument("--prompt-format", default=None, help="override the FIM template")
    complete.add_argument("--json", action="store_true", help="print one JSON object per run")
    complete.add_argument(
        "--repeat", type=int, default=1, help="run N times in one process (shows KV cache reuse)"
    )
    complete.add_argument("--no-cache", action="store_true", help="disable KV prefix reuse")
    complete.add_argument(
        "--show-prompt", action="store_true", help="print the exact prompt to stderr"
    )
    complete.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    serve.set_defaults(func=cmd_serve)
    complete.set_defaults(func=cmd_complete)
    measure_commands(sub)
    adapter_commands(sub)
    feedback_commands(sub)
    _add_plugin_commands(sub)
    describe_from_help(parser)
    return parser


def describe_from_help(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand without a description its one-line help as one (a sentence),
    so each `--help` says what the command does."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {a.dest: a.help for a in action._choices_actions}
        for name, sub in action.choices.items():
            text = helps.get(name)
            if not sub.description and isinstance(text, str) and text:
                sub.description = text[0].upper() + text[1:].rstrip(".") + "."
            describe_from_help(sub)


def _add_tcp_args(serve: argparse.ArgumentParser) -> None:
    """`serve`'s options for TCP clients: the token, the time-outs, what a client may choose."""
    serve.add_argument(
        "--auth-token-file",
        metavar="FILE",
        type=Path,
        help="require TCP clients to send the token in FILE (mode 600) in "
        "initializationOptions.authToken; default: $CODETAILOR_AUTH_TOKEN; "
        "needed to listen beyond 127.0.0.1",
    )
    serve.add_argument(
        "--auth-token",
        metavar="TOKEN",
        help="the token itself (visible to local users in the process list: prefer the above)",
    )
    serve.add_argument(
        "--auth-timeout",
        type=float,
        metavar="SECONDS",
        help="close a TCP connection that has not sent a valid initialize by then (default 10)",
    )
    serve.add_argument(
        "--idle-timeout",
        type=float,
        metavar="SECONDS",
        help="close a TCP connection silent for this long (default 3600; 0: never)",
    )
    serve.add_argument(
        "--allow-client-models",
        action="store_true",
        help="let TCP clients switch to a Hugging Face hub model through their settings "
        "(aliases and local paths are always allowed); not the engine: see "
        "--allow-client-engines",
    )
    serve.add_argument(
        "--allow-client-engines",
        action="store_true",
        help="let TCP clients point the server at a remote engine URL of their choosing "
        "through their `engine` setting (the server's API key goes there)",
    )


def add_serve(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`codetailor serve` and its options."""
    serve = sub.add_parser(
        "serve",
        help="run the language server",
        description="Run the code-completion language server (LSP). An editor starts it and "
        "talks LSP on its stdin/stdout (or over --tcp); run in a terminal, it says what it "
        "loads, when it is ready and how to connect VS Code, Neovim or Emacs.",
    )
    transport = serve.add_mutually_exclusive_group()
    transport.add_argument("--stdio", action="store_true", help="talk LSP on stdin/stdout")
    transport.add_argument(
        "--tcp", metavar="HOST:PORT", help="listen on TCP instead (HOST defaults to 127.0.0.1)"
    )
    _add_tcp_args(serve)
    serve.add_argument(
        "--compile",
        choices=("auto", "on", "off"),
        default="auto",
        help="run decode and draft-verify steps through torch.compile over a static KV cache: "
        "auto (default) = on for CUDA, off on the CPU (it pays only in bfloat16 there, "
        "after minutes of compiling at the first start)",
    )
    serve.add_argument(
        "--quietness",
        type=int,
        metavar="PERCENT",
        help="the quietness setting until the editor sets one (default: $CODETAILOR_QUIETNESS, "
        "else 25): show a completion or next edit only when it is this likely to be accepted; "
        "0 shows every suggestion",
    )
    serve.add_argument("--log-file", type=Path, help="write logs here instead of stderr")
    serve.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    _add_model_args(serve, adapter="auto")
    return serve


def measure_commands(sub: argparse._SubParsersAction) -> None:
    """`codetailor bench ...` and `codetailor eval`: all measurement lives in lsp_server.measure."""
    from lsp_server.measure.cli import register

    register(sub)


def adapter_commands(sub: argparse._SubParsersAction) -> None:
    """`codetailor adapters list|show|remove|publish`."""
    from lsp_server.model.registry_cli import register

    register(sub)


def feedback_commands(sub: argparse._SubParsersAction) -> None:
    """`codetailor feedback stats|clear`: the local feedback log (lsp_server.measure)."""
    from lsp_server.measure.feedback_stats import register

    register(sub)


def engine_setting(args: argparse.Namespace) -> str:
    """`--engine` checked as the `engine` setting is; `--api-key-env NAME` tells the remote
    engine which environment variable holds its key (the key itself never is an argument)."""
    try:
        url = parse_engine(args.engine)
    except ValueError as exc:
        raise CodetailorError(f"--engine: {exc}") from None
    if args.api_key_env:
        os.environ["CODETAILOR_API_KEY_ENV"] = args.api_key_env
    return f"openai:{url}" if url else "local"


def _add_plugin_commands(sub: argparse._SubParsersAction) -> None:
    """Commands from other packages (e.g. `finetune`), found through the
    `codetailor.commands` entry point group, so this package never imports them.

    Each entry point is a function that adds its subparser to `sub` and sets
    `func` on it with `set_defaults`.
    """
    from importlib.metadata import entry_points

    for entry in sorted(entry_points(group="codetailor.commands"), key=lambda e: e.name):
        try:
            register = entry.load()
        except ImportError as exc:  # a broken plugin must not take the core commands down
            log.warning("command %s is unavailable: %s", entry.name, exc)
            continue
        register(sub)


def parse_location(location: str) -> tuple[Path, int, int]:
    """Split FILE:LINE:COL (a path may itself hold colons, e.g. on Windows)."""
    parts = location.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        raise CodetailorError(f"expected FILE:LINE:COL with 1-based numbers, got '{location}'")
    line, col = int(parts[1]), int(parts[2])
    if line < 1 or col < 1:
        raise CodetailorError(f"LINE and COL are 1-based; got {line}:{col}")
    return Path(parts[0]), line, col


def offset_of(text: str, line: int, col: int, where: str = "") -> int:
    """The character offset of 1-based LINE:COL; COL may be one past the end of the line.

    COL counts characters, as compilers print it. The documents' own conversion
    (`session.documents.offset_at`, in code points) finds the offset; unlike an
    LSP position, a position outside the file is an error, not clamped.
    """
    bounds = line_bounds(text, line - 1)
    if bounds is None:
        lines = len(LINE_BREAK.findall(text)) + 1
        raise CodetailorError(f"{where}line {line} is past the end of the file ({lines} lines)")
    start, end = bounds
    if col > end - start + 1:
        raise CodetailorError(
            f"{where}column {col} is past the end of line {line} ({end - start} characters)"
        )
    return offset_at(text, line - 1, col - 1, encoding="utf-32")


def display_path(path: Path) -> str:
    """The file's path as a prompt shows it: relative to the working directory where possible."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.name


def cmd_complete(args: argparse.Namespace) -> int:
    path, line, col = parse_location(args.location)
    text = read_source(path)
    offset = offset_of(text, line, col, where=f"{path}: ")
    if args.repeat < 1 or args.max_tokens < 1:
        raise CodetailorError("--repeat and --max-tokens must be at least 1")

    args.engine = engine_setting(args)
    from lsp_server.commands.adapter import adapter_choice
    from lsp_server.model.factory import load_completers

    choice = adapter_choice(args.adapter, args.model, args.engine, path)
    # With `--engine openai:URL` only the tokenizer loads: the server generates.
    loaded = load_completers(model_spec(args), [choice.ref], reuse=not args.no_cache)
    model = loaded.model
    log.info(
        "loaded %s on %s/%s in %.1f s", model.name, model.device, model.dtype, model.load_seconds
    )
    refused = loaded.failed.get(choice.ref)  # the general adapter, made for other weights
    reason = f"{refused}: base model" if refused else choice.reason
    facts: dict[str, Any] = {
        "model": model.name,
        "adapter": str(model.adapter.path) if model.adapter else None,
        "adapter_reason": reason,
        "device": model.device,
        "dtype": model.dtype,
        "load_ms": round(model.load_seconds * 1000),
    }
    if args.engine != "local":
        facts = {"model": model.name, "device": model.device, "engine": args.engine}
    return print_completions(args, loaded.completer, path, text, offset, facts)


def model_spec(args: argparse.Namespace) -> ModelSpec:
    """The model `complete` loads, from its options; an unknown `--prompt-format` is
    refused here, before anything loads."""
    if args.prompt_format:
        from lsp_server.completion.prompt import get_format

        try:
            get_format(args.prompt_format)
        except ValueError as exc:
            raise CodetailorError(str(exc)) from None
    return ModelSpec(
        model=args.model,
        device=args.device,
        dtype=args.dtype,
        engine=parse_engine(args.engine),
        prompt_format=args.prompt_format,
        trust_remote_code=args.trust_remote_code,
    )


def print_completions(
    args: argparse.Namespace,
    completer: Any,
    path: Path,
    text: str,
    offset: int,
    facts: dict[str, Any],
) -> int:
    """Run `complete` --repeat times; print the text, or one JSON object per run with `facts`."""
    for run in range(args.repeat):
        result = completer.complete(
            text,
            offset,
            max_tokens=args.max_tokens,
            mode=args.mode,
            time_budget=args.time_budget,
            path=display_path(path),
        )
        if args.show_prompt and run == 0:
            print(f"--- prompt ({completer.format.name}) ---", file=sys.stderr)
            print(result.prompt, file=sys.stderr)
            print("--- end of prompt ---", file=sys.stderr)
        if args.json:
            record = result.as_dict() | {"run": run + 1, "prompt_format": completer.format.name}
            print(json.dumps(record | facts), flush=True)
    if not args.json:
        print(result.text)
    explain_answer(result, text, offset, args.max_tokens, getattr(completer, "rules", None))
    return 0


def explain_answer(result: Any, text: str, offset: int, max_tokens: int, rules: Any = None) -> None:
    """On stderr: why an empty completion is empty, or that the token budget cut it."""
    from lsp_server.completion.completer import NEAR_CHARS
    from lsp_server.completion.explain import cut_note, why_empty
    from lsp_server.completion.postprocess import RULES

    if not result.text:
        if result.generation.stop_reason == "error":
            return  # the engine's failure is already one line on stderr, with its cause
        prefix, suffix = text[max(offset - NEAR_CHARS, 0) : offset], text[offset:][:NEAR_CHARS]
        why = why_empty(result.raw, prefix, suffix, result.scope, result.generation, rules or RULES)
        print(f"codetailor: empty completion: {why}", file=sys.stderr)
        return
    full = getattr(result, "cut_from", "") or result.text
    if note := cut_note(result.generation, full, result.text, max_tokens):
        print(f"codetailor: {note}", file=sys.stderr)


def cmd_serve(args: argparse.Namespace) -> int:
    from lsp_server.lsp.serve import serve

    args.engine = engine_setting(args)
    return serve(args)


def setup_logging(verbosity: int, log_file: Path | None = None) -> None:
    """stderr shows warnings (-v: INFO, -vv: DEBUG); a `--log-file` keeps INFO at least."""
    verbosity = max(verbosity, 1) if log_file else verbosity
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler: logging.Handler = (
        logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    preflight.quiet_libraries(verbosity)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "rest"):  # `bench engine|overhead|remote` parse their own
        args.rest = [*extra, *args.rest]  # options; argparse's REMAINDER misses leading ones
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    setup_logging(getattr(args, "verbose", 0), getattr(args, "log_file", None))
    return run_command(args.func, args)


def run_command(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command; a user mistake becomes one line on stderr and exit status 2."""
    try:
        from lsp_server.model.loading import cache_home

        preflight.check_home(cache_home())  # before anything is converted or written
        return func(args)
    except CodetailorError as exc:
        print(f"codetailor: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("codetailor: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
