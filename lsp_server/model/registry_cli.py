"""`codetailor adapters list|show|remove|publish`: the adapter registry from the command line."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from lsp_server.errors import CodetailorError
from lsp_server.model import registry
from lsp_server.model.loading import DEFAULT_MODEL
from lsp_server.model.shipped import NAME, shipped_adapter
from lsp_server.spec import GENERAL_REASON

EXAMPLES = """\
examples:
  codetailor adapters list                           # every registered adapter
  codetailor adapters show .                         # the adapter this repository gets
  codetailor adapters publish myrepo-1a2b3c4d --to "$VLLM_LORA_RESOLVER_CACHE_DIR" \\
      --base Qwen/Qwen2.5-Coder-1.5B                 # for `vllm serve ... --enable-lora`
  codetailor adapters remove myrepo-1a2b3c4d         # forget it (the folder stays)
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "adapters",
        help="list, show, remove and publish registered adapters",
        description="Adapters registered by `codetailor finetune`, per repository "
        "(by root path and remote URL), in $CODETAILOR_HOME/adapters/registry.json.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every registered adapter")
    listing.add_argument("--json", action="store_true", help="one JSON array")
    show = actions.add_parser("show", help="one adapter, by name, folder or repository")
    show.add_argument("what", metavar="NAME|ADAPTER_DIR|REPO_DIR")
    remove = actions.add_parser("remove", help="forget an adapter (its folder stays)")
    remove.add_argument("what", metavar="NAME|ADAPTER_DIR")
    publish = actions.add_parser(
        "publish", help="write an adapter for vLLM's LoRA filesystem resolver"
    )
    publish.add_argument("adapter", metavar="NAME|ADAPTER_DIR")
    publish.add_argument("--to", required=True, type=Path, metavar="DIR", help="resolver dir")
    publish.add_argument("--name", help="the name clients send as `model` (default: registered)")
    publish.add_argument(
        "--base", help="the name the server serves the base model by (default: the trained one)"
    )
    parser.set_defaults(func=cmd_adapters)


def cmd_adapters(args: argparse.Namespace) -> int:
    if args.action == "list":
        entries = registry.load()
        if args.json:
            print(json.dumps([e.as_dict() for e in entries], indent=2))
        elif not entries:
            print("no adapters registered (`codetailor finetune REPO --out DIR` registers one)")
        for entry in [] if args.json else entries:
            fields = (entry.name, entry.remote or entry.repo_root, entry.base_model, entry.path)
            print("\t".join(printable(str(f)) for f in fields))
        return 0
    if args.action == "show":
        found = registry.find(args.what)
        reason = "name or folder"
        if found is None and Path(args.what).expanduser().is_dir():
            match = registry.lookup_match(args.what)
            found, reason = (match.entry, match.reason) if match else (None, "")
            if found is None and (general := shipped_adapter(None)) is not None:
                print(json.dumps(general_entry(general.path), indent=2))
                return 0
        if found is None:
            raise CodetailorError(f"no registered adapter for '{args.what}'")
        print(json.dumps(found.as_dict() | {"matched_by": reason}, indent=2))
        return 0
    if args.action == "remove":
        entry = registry.remove(args.what)
        print(printable(f"removed {entry.name} ({entry.path} is left in place)"))
        return 0
    target = registry.publish(args.adapter, args.to, name=args.name, base=args.base)
    print(printable(str(target)))
    return 0


def general_entry(path: str) -> dict[str, str | None]:
    """What `adapters show REPO` says where the repository has no adapter of its own and the
    default model serves its shipped general one (lsp_server.model.shipped)."""
    return {
        "name": NAME,
        "path": path,
        "base_model": DEFAULT_MODEL,
        "matched_by": f"none registered: {GENERAL_REASON} ({DEFAULT_MODEL})",
    }


def printable(text: str) -> str:
    """`text` with control characters (terminal escape codes, tabs, newlines) written as
    `\\x1b`-style escapes: names, paths and remote URLs come from folders and git
    configuration that someone else may have written."""
    return _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
