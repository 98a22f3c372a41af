"""The adapter registry: which LoRA adapters were trained for which repository.

`$CODETAILOR_HOME/adapters/registry.json` holds one entry per registered
adapter, keyed by the repository's root path and its remote URL (`git config
remote.origin.url`, normalised), so a fresh clone of the same repository, at
another path, finds its adapter. Writes are atomic (a temporary file renamed
over the old one), so a reader never sees half a registry.

`lookup(workspace_root)` answers "which adapter for this workspace" for the
server: the newest entry of the repository that holds the workspace, matched by
path first, then by remote URL. `publish` copies an adapter into the layout
vLLM's LoRA filesystem resolver reads. Pure apart from file I/O and `git`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from lsp_server.errors import CodetailorError
from lsp_server.model.adapter_meta import META_FILE, read_meta
from lsp_server.model.loading import cache_home
from lsp_server.repo.git import git_text
from lsp_server.spec import AdapterRef, Registered, fixed_adapter

log = logging.getLogger("codetailor.registry")

VERSION = 1
# What vLLM's resolver reads: the PEFT config and the weights, nothing pickled.
PUBLISHED_FILES = ("adapter_config.json", "adapter_model.safetensors")
Reason = Literal["repository path", "remote URL"]


@dataclass(frozen=True)
class AdapterEntry:
    """One registered adapter."""

    name: str  # unique; what a remote engine sends as `model`
    path: str  # the adapter folder
    repo_root: str | None
    remote: str | None  # normalised remote URL, e.g. "github.com/org/repo"
    base_model: str | None
    base_fingerprint: str | None
    prompt_format: str | None
    commit: str | None
    registered_at: str

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Match:
    """The adapter `lookup` found for a workspace, and how it matched."""

    entry: AdapterEntry
    reason: Reason
    # Set when the repository's only adapters were trained for another base model than
    # the one asked for: why `entry` (the newest of them) must not be used.
    refused: str | None = None


def registry_path() -> Path:
    return cache_home() / "adapters" / "registry.json"


def normalize_remote(url: str | None) -> str | None:
    """One spelling per repository: `git@github.com:Org/repo.git`, `https://github.com/Org/repo`
    and `ssh://git@github.com/Org/repo/` all become `github.com/Org/repo`; a local path
    stays a path."""
    if not url or not url.strip() or re.search(r"[\x00-\x1f\x7f-\x9f]", url.strip()):
        return None  # no URL holds control characters (a terminal escape code, say)
    text = url.strip()
    scp = re.match(r"^(?:[\w.-]+@)?([\w.-]+):(?!//)(.+)$", text)
    if "://" in text:
        _, rest = text.split("://", 1)
        host, _, path = rest.partition("/")
        host = host.rsplit("@", 1)[-1]  # credentials never stay in a key
        host = re.sub(r":(22|80|443)$", "", host)
    elif scp and not text.startswith("/"):
        host, path = scp.group(1), scp.group(2)
    else:
        return str(Path(text).expanduser().resolve())
    path = path.strip("/").removesuffix(".git").strip("/")
    return f"{host.lower()}/{path}"


def repo_identity(path: str | Path) -> tuple[Path, str | None]:
    """(the repository root holding `path`, its normalised remote URL or None).

    Outside a git work tree the root is `path` itself and there is no remote.
    """
    where = Path(path).expanduser().resolve()
    start = where if where.is_dir() else where.parent
    root = git_text(start, "rev-parse", "--show-toplevel", timeout=10)
    top = Path(root).resolve() if root else start
    return top, normalize_remote(git_text(top, "config", "--get", "remote.origin.url", timeout=10))


def stamp() -> tuple[int, int] | None:
    """A cheap token that changes whenever the registry is rewritten (None: no registry yet):
    a server polls it to notice a new adapter (hot reload) without parsing the file."""
    try:
        info = registry_path().stat()
    except OSError:
        return None
    return info.st_mtime_ns, info.st_ino


def load() -> list[AdapterEntry]:
    """Every registered adapter, oldest first; a missing registry is an empty one."""
    file = registry_path()
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise CodetailorError(f"cannot read the adapter registry {file}: {exc}") from exc
    fields = {f.name for f in dataclasses.fields(AdapterEntry)}
    entries = data.get("adapters", []) if isinstance(data, dict) else []
    return [
        AdapterEntry(**{k: e.get(k) for k in fields})  # type: ignore[arg-type]
        for e in entries
        if isinstance(e, dict) and e.get("name") and e.get("path")
    ]


def save(entries: list[AdapterEntry]) -> None:
    """Write the registry atomically."""
    file = registry_path()
    file.parent.mkdir(parents=True, exist_ok=True)
    payload = {"version": VERSION, "adapters": [e.as_dict() for e in entries]}
    fd, tmp = tempfile.mkstemp(prefix=".registry-", suffix=".json", dir=file.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def adapter_name(repo_root: Path, remote: str | None, adapter_dir: Path) -> str:
    """`<repository>-<8 hex of the weights>`: readable, and new for each new training run,
    so an engine that caches adapters by name (vLLM) loads the new weights."""
    base = (remote or str(repo_root)).rstrip("/").rsplit("/", 1)[-1] or "repo"
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.") or "repo"
    digest = hashlib.sha256()
    weights = adapter_dir / "adapter_model.safetensors"
    if weights.is_file():
        with weights.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    else:
        digest.update(str(adapter_dir.resolve()).encode())
    return f"{slug}-{digest.hexdigest()[:8]}"


def register_adapter(
    repo_root: str | Path, adapter_dir: str | Path, *, name: str | None = None
) -> AdapterEntry:
    """Record `adapter_dir` as the newest adapter of the repository at `repo_root`.

    The same folder registered again replaces its old entry. Returns the entry.
    """
    folder = Path(adapter_dir).expanduser().resolve()
    if not (folder / "adapter_config.json").is_file():
        raise CodetailorError(f"adapter {folder} has no adapter_config.json; is it an adapter?")
    root, remote = repo_identity(repo_root)
    meta = read_meta(folder)
    base = meta.base_model if meta else None
    entries = [e for e in load() if Path(e.path) != folder]
    chosen = name or adapter_name(root, remote, folder)
    if any(e.name == chosen for e in entries):
        raise CodetailorError(f"an adapter named '{chosen}' is already registered; pick another")
    entry = AdapterEntry(
        name=chosen,
        path=str(folder),
        repo_root=str(root),
        remote=remote,
        base_model=base.name if base else None,
        base_fingerprint=base.fingerprint if base else None,
        prompt_format=meta.prompt_format if meta else None,
        commit=meta.repository.get("commit") if meta else None,
        registered_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    save([*entries, entry])
    return entry


def lookup_match(workspace_root: str | Path, base: str | None = None) -> Match | None:
    """The newest usable adapter for the repository holding `workspace_root`, and why.

    An entry matches by repository path, else by remote URL (a fresh clone);
    entries whose folder is gone are passed over. With `base` (a `--model` spec),
    entries trained for another base model are passed over too; when they are all
    there is, the newest comes back with `refused` saying why it does not fit.
    """
    root, remote = repo_identity(workspace_root)
    usable = [e for e in load() if (Path(e.path) / "adapter_config.json").is_file()]
    by_path = [e for e in usable if e.repo_root and Path(e.repo_root) == root]
    by_remote = [e for e in usable if remote and e.remote == remote]
    served = base_name(base) if base is not None else None
    refused: Match | None = None
    ways: tuple[tuple[list[AdapterEntry], Reason], ...] = (
        (by_path, "repository path"),
        (by_remote, "remote URL"),
    )
    for entries, reason in ways:
        for entry in reversed(entries):
            trained = entry.base_model
            if served is None or not trained or same_base(trained, served):
                return Match(entry, reason)
            if refused is None:
                why = f"trained for base model '{trained}', not '{served}'"
                refused = Match(entry, reason, why)
    return refused


def base_name(spec: str | None) -> str:
    """The name a model spec's adapters record as their base (`LoadedModel.name`)."""
    from lsp_server.model.loading import DEFAULT_MODEL, resolve_model

    try:
        return resolve_model(spec).name
    except CodetailorError:
        return spec or DEFAULT_MODEL


def lookup(workspace_root: str | Path) -> AdapterEntry | None:
    """The adapter registered for the workspace's repository, or None (use the base model)."""
    match = lookup_match(workspace_root)
    return match.entry if match else None


def find(name_or_path: str) -> AdapterEntry | None:
    """The entry with this name, or for this adapter folder."""
    entries = load()
    for entry in entries:
        if entry.name == name_or_path:
            return entry
    path = Path(name_or_path).expanduser()
    return find_by_path(path) if path.exists() else None


def adapter_ref(setting: str | None) -> AdapterRef | None:
    """The adapter an `--adapter` value names (see `resolve_adapter`); `auto` and `none`
    name none (None: the base model): the session resolves `auto` by workspace."""
    spec = fixed_adapter(setting)
    return resolve_adapter(spec) if spec is not None else None


def resolve_adapter(spec: str) -> AdapterRef:
    """The adapter a folder or registered name stands for: an existing folder as given
    (with its registered name, if registered), else the folder of the adapter registered
    under that name, else `spec` unchanged (loading then says why not)."""
    try:
        entries = load()
    except CodetailorError as exc:  # an unreadable registry names nothing
        log.warning("adapter registry: %s", exc)
        entries = []
    if Path(spec).expanduser().exists():
        folder = Path(spec).expanduser().resolve()
        entry = next((e for e in reversed(entries) if Path(e.path) == folder), None)
        return AdapterRef(spec, entry.name if entry else None)
    entry = next((e for e in entries if e.name == spec), None)
    return AdapterRef(entry.path, entry.name) if entry else AdapterRef(spec)


def find_by_path(adapter_dir: str | Path) -> AdapterEntry | None:
    folder = Path(adapter_dir).expanduser().resolve()
    return next((e for e in reversed(load()) if Path(e.path) == folder), None)


def remove(name_or_path: str) -> AdapterEntry:
    """Forget an adapter (its folder is left alone); raises when none matches."""
    entry = find(name_or_path)
    if entry is None:
        raise CodetailorError(f"no registered adapter '{name_or_path}' (see `adapters list`)")
    save([e for e in load() if e.name != entry.name])
    return entry


def same_base(a: str, b: str) -> bool:
    """Whether two base model names mean the same model: equal, or equal but for the
    organisation or folder in front (`Qwen/Qwen2.5-Coder-1.5B` vs `Qwen2.5-Coder-1.5B`)."""

    def last(name: str) -> str:
        return name.strip().rstrip("/").replace("\\", "/").rsplit("/", 1)[-1].lower()

    return a.strip() == b.strip() or last(a) == last(b)


MAX_NAME = 128  # a published adapter's name: a folder name, with room for `.NAME.old`


def publish(
    adapter: str, to: str | Path, *, name: str | None = None, base: str | None = None
) -> Path:
    """Write `adapter` (a registered name or a folder) as `to/NAME/` for vLLM's LoRA
    filesystem resolver: adapter_config.json (its `base_model_name_or_path` set to the
    name the server serves the base model by) and adapter_model.safetensors, plus
    codetailor.json. Refuses an adapter made for another base model. Returns the folder.
    """
    entry = find(adapter)
    folder = Path(entry.path) if entry else Path(adapter).expanduser().resolve()
    missing = [f for f in PUBLISHED_FILES if not (folder / f).is_file()]
    if missing:
        raise CodetailorError(
            f"adapter {folder} lacks {', '.join(missing)}; only PEFT safetensors adapters publish"
        )
    meta = read_meta(folder)
    recorded = meta.base_model.name if meta and meta.base_model else None
    trained = recorded or (entry.base_model if entry else None)
    served = base or trained
    if not served:
        raise CodetailorError(
            f"adapter {folder} does not say its base model: pass --base NAME, the name the "
            "server serves the base model by"
        )
    if trained and not same_base(trained, served):
        raise CodetailorError(
            f"adapter {folder} was trained for base model '{trained}', not '{served}'; "
            f"serve '{trained}' and publish with --base naming it"
        )
    chosen = name or (entry.name if entry else folder.name)
    if len(chosen) > MAX_NAME or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", chosen):
        raise CodetailorError(
            f"adapter name '{chosen[:40]}{'...' if len(chosen) > 40 else ''}' must be letters, "
            f"digits, '.', '_', '-', at most {MAX_NAME} of them"
        )
    target = Path(to).expanduser() / chosen
    try:
        return _write_published(folder, target, served)
    except OSError as exc:
        raise CodetailorError(f"cannot publish to {target}: {exc.strerror or exc}") from None


def _write_published(folder: Path, target: Path, served: str) -> Path:
    config = json.loads((folder / "adapter_config.json").read_text())
    if str(config.get("peft_type", "LORA")).upper() != "LORA":
        raise CodetailorError(f"adapter {folder} is {config.get('peft_type')}, not a LoRA adapter")
    config["base_model_name_or_path"] = served
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        (staging / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
        shutil.copyfile(folder / "adapter_model.safetensors", staging / "adapter_model.safetensors")
        if (folder / META_FILE).is_file():
            shutil.copyfile(folder / META_FILE, staging / META_FILE)
        old = target.with_name(f".{target.name}.old")
        _remove(old)
        if target.exists() or target.is_symlink():
            target.rename(old)
        os.replace(staging, target)
        _remove(old)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _remove(path: Path) -> None:
    """Remove a folder, a file or a symlink (never what a symlink points to); nothing if absent."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


_UNREADABLE: set[str] = set()  # folders already logged as unreadable


def unreadable_folder(folder: str | Path, exc: Exception) -> None:
    """Log, once per folder, that a workspace folder cannot be read (it is skipped)."""
    name = repr(str(folder)[:200])
    if name not in _UNREADABLE:
        _UNREADABLE.add(name)
        log.warning("workspace folder %s cannot be read (%s); skipped", name, exc)


def registered_for(workspace_root: str | Path, base: str | None = None) -> Registered | None:
    """What `lookup_match` finds for the workspace (for the base model `base`, a `--model`
    spec; None: the default), as the session's adapter choice reads it.

    A registry that cannot be read is logged and means "none registered": the server
    keeps serving the base model rather than failing to start."""
    from lsp_server.model.loading import DEFAULT_MODEL

    try:
        match = lookup_match(workspace_root, base or DEFAULT_MODEL)
    except CodetailorError as exc:
        log.warning("adapter registry: %s; using the base model", exc)
        return None
    except (OSError, ValueError) as exc:  # a folder the file system cannot take or read
        unreadable_folder(workspace_root, exc)
        return None
    if match is None:
        return None
    how = "by path" if match.reason == "repository path" else "by remote"
    return Registered(match.entry.name, match.entry.path, how, match.refused)
