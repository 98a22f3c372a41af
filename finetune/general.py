"""Rebuild the general adapter shipped for the default model: `make general-adapter`.

    python -m finetune.general [--sources DIR] [--max-steps N] [--out DIR]

Four steps, in the order they run:
- `read_manifest`: the sources (finetune/general_sources.json): for each public
  repository its GitHub URL, the commit, its licence (SPDX id) and licence files,
  and the folders and extensions taken. The evaluation repositories (click, attrs,
  flask) are refused there, and any copy of them inside a source is left out;
- `locate`: each source's git directory holding its commit: a checkout or bare
  repository under `--sources DIR`, else the commit alone fetched over https into
  `$CODETAILOR_HOME/general/sources/` (lsp_server.repo.git, which runs nothing a
  repository's configuration names);
- `assemble`: one training folder with the permitted files of every source as
  they are at its commit (`<owner>+<name>/<path>`), read from git objects, never
  from a work tree;
- `build`: the normal `codetailor finetune` on that folder with the checked-in recipe
  (finetune/configs/general-smollm2.yaml), then the adapter in half precision,
  with its metadata naming the sources, `SOURCES.md` and the licence texts, written
  into the package (lsp_server/adapters/smollm2-135m-general/, what
  `lsp_server.model.shipped` serves), refused in one line when over 20 MiB.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from lsp_server.errors import CodetailorError
from lsp_server.model import shipped
from lsp_server.model.loading import DEFAULT_MODEL, cache_home
from lsp_server.repo.files import skip_reason_for_path, skip_reason_for_text
from lsp_server.repo.git import fetch_commit, run_git

MANIFEST = Path(__file__).with_name("general_sources.json")
RECIPE = Path(__file__).with_name("configs") / "general-smollm2.yaml"
TARGET = shipped.SHIPPED[DEFAULT_MODEL]
# The repositories `codetailor eval` figures are reported on: never trained on, not even as
# a copy vendored inside a source (a path through a folder of their package's name).
EVALUATION = {"pallets/click": "click", "python-attrs/attrs": "attr", "pallets/flask": "flask"}
EVALUATION_PACKAGES = frozenset({"click", "attr", "attrs", "flask"})
_SPDX = re.compile(r"^[A-Za-z0-9.+-]+$")
_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class Source:
    """One source repository of the general adapter, as the manifest pins it."""

    repo: str  # owner/name on GitHub
    url: str
    commit: str  # 40 hex digits
    license: str  # SPDX id
    license_files: tuple[str, ...]
    folders: tuple[str, ...]  # "" is the whole repository
    extensions: tuple[str, ...]

    @property
    def slug(self) -> str:
        """`owner+name`: its folder in the training folder and in the fetch cache."""
        return self.repo.replace("/", "+")

    def as_dict(self) -> dict[str, Any]:
        return {"repo": self.repo, "url": self.url, "commit": self.commit, "license": self.license}


def read_manifest(path: Path = MANIFEST) -> list[Source]:
    """The sources `path` lists; one CodetailorError listing every problem in it."""
    try:
        raw = json.loads(path.read_text())
        entries = raw["sources"]
        assert isinstance(entries, list) and entries
    except (OSError, ValueError, KeyError, TypeError, AssertionError) as exc:
        raise CodetailorError(f"manifest {path}: not a JSON object with sources: {exc}") from None
    problems: list[str] = []
    sources = [s for i, e in enumerate(entries) if (s := _source(e, i, problems)) is not None]
    seen = [s.repo.lower() for s in sources]
    problems += [f"{r} is listed twice" for r in sorted({r for r in seen if seen.count(r) > 1})]
    if problems:
        raise CodetailorError(f"manifest {path}: " + "; ".join(problems))
    return sources


def _source(entry: Any, index: int, problems: list[str]) -> Source | None:
    """One manifest entry as a Source, or None with its problems added to `problems`."""
    if not isinstance(entry, dict):
        problems.append(f"source {index + 1} is not an object")
        return None
    repo = str(entry.get("repo", ""))
    where = f"source {repo or index + 1}"
    found: list[str] = []

    def strings(key: str) -> tuple[str, ...]:
        value = entry.get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            found.append(f"{key} must be a list of strings")
            return ()
        return tuple(value)

    if not _REPO.match(repo):
        found.append("repo must be owner/name")
    elif repo.lower() in EVALUATION:
        found.append("it is an evaluation repository (never trained on)")
    url, commit, spdx = (str(entry.get(k, "")) for k in ("url", "commit", "license"))
    if url.rstrip("/").removesuffix(".git").lower() != f"https://github.com/{repo}".lower():
        found.append(f"url must be https://github.com/{repo}")
    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        found.append("commit must be 40 lower-case hex digits")
    if not _SPDX.match(spdx):
        found.append("license must be an SPDX id, e.g. MIT")
    folders, extensions = strings("folders"), strings("extensions")
    files = strings("license_files")
    if any(f.startswith("/") or ".." in PurePosixPath(f).parts for f in folders + files):
        found.append("folders and license_files are paths inside the repository")
    if not files:
        found.append("license_files must name the licence text")
    if not all(e.startswith(".") for e in extensions) or not extensions:
        found.append("extensions must be suffixes like .py")
    problems += [f"{where}: {f}" for f in found]
    if found:
        return None
    folders = tuple(f.strip("/") for f in folders)
    return Source(repo, url, commit, spdx, files, folders, tuple(e.lower() for e in extensions))


def skip_reason(path: str, source: Source) -> str | None:
    """Why the file at `path` (inside `source`) is not taken; None to take it."""
    parts = PurePosixPath(path).parts
    if not any(f == "" or path.startswith(f + "/") for f in source.folders):
        return "outside_folders"
    if PurePosixPath(path).suffix.lower() not in source.extensions:
        return "extension"
    if EVALUATION_PACKAGES & {p.lower() for p in parts[:-1]}:
        return "evaluation_copy"
    return skip_reason_for_path(path, frozenset(source.extensions))


def has_commit(git_dir: Path, commit: str) -> bool:
    """Whether `git_dir` (a checkout or a bare repository) holds `commit`."""
    found = run_git(git_dir, "cat-file", "-e", f"{commit}^{{commit}}", timeout=30)
    return git_dir.is_dir() and found is not None


def locate(source: Source, sources_dir: Path | None, cache: Path) -> Path:
    """The git directory holding `source.commit`: under `sources_dir` when given (as
    `owner+name/repo`, `owner+name`, `name` or `name.git`), else the fetch cache, else
    fetched into it now."""
    name = source.repo.split("/")[1]
    if sources_dir is not None:
        tried = [sources_dir / p for p in (f"{source.slug}/repo", source.slug, name, f"{name}.git")]
        found = next((d for d in tried if has_commit(d, source.commit)), None)
        if found is None:
            raise CodetailorError(
                f"no checkout of {source.repo} holding commit {source.commit[:12]} in "
                f"{sources_dir} (looked for {', '.join(p.name for p in tried)})"
            )
        return found
    cached = cache / f"{source.slug}.git"
    if has_commit(cached, source.commit):
        return cached
    print(f"general: fetching {source.repo} at {source.commit[:12]}", file=sys.stderr)
    if not fetch_commit(source.url, source.commit, cached):
        raise CodetailorError(
            f"cannot fetch {source.url} at {source.commit[:12]}: offline? pass --sources DIR "
            "with checkouts of the sources"
        )
    return cached


def assemble(located: Sequence[tuple[Source, Path]], out: Path, max_bytes: int) -> dict[str, Any]:
    """Write every permitted file of each source, as it is at its commit, into `out`
    (replaced) as `<owner>+<name>/<path>`; return the files taken and skipped, per source."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    run_git(out, "init", "-q")  # its own work tree: the lister sees every file, nothing above
    stats: dict[str, Any] = {}
    for source, git_dir in located:
        stats[source.repo] = _extract(source, git_dir, out / source.slug, max_bytes)
    return stats


def _extract(source: Source, git_dir: Path, dest: Path, max_bytes: int) -> dict[str, Any]:
    """The permitted files of `source` at its commit, read from git's objects (nothing of a
    checkout's local changes; regular files only, no symlink), into `dest`."""
    folders = [f for f in source.folders if f]
    listing = run_git(
        git_dir, "ls-tree", "-r", "-z", "-l", "--full-tree", source.commit, "--", *folders
    )
    if listing is None:
        raise CodetailorError(f"cannot read {source.repo} at {source.commit[:12]} in {git_dir}")
    skipped: dict[str, int] = {}
    wanted: dict[str, str] = {}  # blob id -> path
    for entry in filter(None, listing.decode("utf-8", "surrogateescape").split("\0")):
        info, _, path = entry.partition("\t")
        mode, kind, blob, size = info.split()
        why = skip_reason(path, source)
        if why is None and (kind != "blob" or mode not in ("100644", "100755")):
            why = "not_a_file"
        if why is None and int(size) > max_bytes:
            why = "too_large"
        if why is None and blob in wanted:
            why = "duplicate"  # the same bytes at another path: taken once
        if why is None:
            wanted[blob] = path
        else:
            skipped[why] = skipped.get(why, 0) + 1
    taken, size_taken = 0, 0
    for blob, raw in _blobs(git_dir, list(wanted)):
        text = _text(raw) if raw is not None else None
        why = skip_reason_for_text(text) if text is not None else "not_text"
        if why is not None:
            skipped[why] = skipped.get(why, 0) + 1
            continue
        assert text is not None
        target = dest / wanted[blob]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        taken, size_taken = taken + 1, size_taken + len(text)
    return {"commit": source.commit, "files": taken, "chars": size_taken, "skipped": skipped}


def _blobs(git_dir: Path, ids: list[str]) -> list[tuple[str, bytes | None]]:
    """Each blob's bytes (None: missing, as in a partial clone), in one `cat-file --batch`."""
    if not ids:
        return []
    out = run_git(
        git_dir, "cat-file", "--batch", timeout=600, stdin="\n".join(ids).encode() + b"\n"
    )
    if out is None:
        raise CodetailorError(f"cannot read the files of {git_dir}")
    found: list[tuple[str, bytes | None]] = []
    at = 0
    for blob in ids:
        end = out.index(b"\n", at)
        header = out[at:end].split()
        if len(header) < 3:  # "<id> missing"
            found.append((blob, None))
            at = end + 1
            continue
        size = int(header[2])
        found.append((blob, out[end + 1 : end + 1 + size]))
        at = end + 1 + size + 1
    return found


def _text(raw: bytes) -> str | None:
    """The bytes as UTF-8 text; None for binary or another encoding."""
    if b"\0" in raw:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def build(args: argparse.Namespace) -> dict[str, Any]:
    """The four steps: manifest, sources, training folder, training and export."""
    from finetune.config import FinetuneConfig, load_yaml
    from finetune.train import run

    sources = read_manifest(args.manifest)
    work = (args.work or cache_home() / "general").expanduser()
    located = [(s, locate(s, args.sources, work / "sources")) for s in sources]
    recipe = load_yaml(args.recipe)
    corpus = assemble(located, work / "corpus", int(recipe.get("max_file_bytes", 512_000)))
    files = sum(c["files"] for c in corpus.values())
    print(f"general: {files} files from {len(sources)} sources in {work}/corpus", file=sys.stderr)
    if args.assemble_only:
        return {"corpus": corpus}
    values = recipe | {"repo": str(work / "corpus"), "out": str(work / "adapter")}
    if args.max_steps is not None:
        values["max_steps"] = args.max_steps
    cfg = FinetuneConfig.from_dict(values).validate()
    if cfg.model != DEFAULT_MODEL:
        raise CodetailorError(f"recipe {args.recipe}: the general adapter is for {DEFAULT_MODEL}")
    summary = run(cfg, resume=args.resume, progress=not args.no_progress)
    size = export(work / "adapter", args.out, located, corpus)
    return {"corpus": corpus, "training": summary, "out": str(args.out), "bytes": size}


def export(
    adapter: Path, out: Path, located: Sequence[tuple[Source, Path]], corpus: dict[str, Any]
) -> int:
    """Write `adapter` into `out` (replaced) as it ships: the weights in float16, the
    metadata naming the sources (no path of the machine that built it), `SOURCES.md` and
    the licence texts; checked against the size limit before anything is replaced."""
    from lsp_server.model.adapter_meta import read_meta, write_meta

    sources = [s for s, _ in located]
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        half_weights(adapter / "adapter_model.safetensors", staging / "adapter_model.safetensors")
        shutil.copyfile(adapter / "adapter_config.json", staging / "adapter_config.json")
        write_recipe(adapter / "finetune.yaml", staging / "finetune.yaml", out.name)
        meta = read_meta(adapter)
        if meta is None:
            raise CodetailorError(f"{adapter} has no codetailor.json: not made by finetune")
        meta.repository = {"name": out.name, "sources": [s.as_dict() for s in sources]}
        if meta.training.get("started_from"):  # an earlier build, on the machine that built it
            meta.training["started_from"] = {"path": "an earlier build"} | {
                k: v for k, v in meta.training["started_from"].items() if k != "path"
            }
        meta.data["sources"] = corpus
        write_meta(staging, meta)
        write_sources(staging, located, corpus)
        size = shipped.check_size(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return size


def half_weights(source: Path, target: Path) -> None:
    """The safetensors file at `source` with its float tensors in float16 (LoRA weights are
    far inside its range; a value that is not finite there is refused)."""
    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(source))
    half = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in tensors.items()}
    bad = [k for k, v in half.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CodetailorError(f"{source}: {bad[0]} does not fit float16; keep float32")
    save_file(half, str(target), metadata={"format": "pt"})
    target.chmod(0o644)  # installed for every user to read (it is written as 0600)


def write_recipe(source: Path, target: Path, name: str) -> None:
    """The resolved config beside the weights, without the paths of the machine that built it
    (`repo`: the training folder, `out`: its scratch copy, `init_adapter`: an earlier build)."""
    text = source.read_text()
    text = re.sub(r"(?m)^repo: .*$", "repo: the sources in SOURCES.md", text)
    text = re.sub(r"(?m)^init_adapter: (?!none$|null$).*$", "init_adapter: an earlier build", text)
    target.write_text(re.sub(r"(?m)^out: .*$", f"out: {name}", text))


def write_sources(
    folder: Path, located: Sequence[tuple[Source, Path]], corpus: dict[str, Any]
) -> None:
    """`SOURCES.md` (each source: URL, commit, licence, files taken) and each source's
    licence texts under `LICENSES/`."""
    lines = [
        "# Sources of this adapter",
        "",
        "Trained on the files below (finetune/general.py); each source's licence text is in",
        "LICENSES/. Rebuild with `make general-adapter`.",
        "",
        "| repository | commit | licence | files |",
        "|---|---|---|---|",
    ]
    for s, _ in located:
        taken = corpus.get(s.repo, {}).get("files", 0)
        lines.append(f"| {s.url} | {s.commit} | {s.license} | {taken} |")
    (folder / "SOURCES.md").write_text("\n".join(lines) + "\n")
    licences = folder / "LICENSES"
    licences.mkdir()
    for s, git_dir in located:
        for name in s.license_files:
            text = run_git(git_dir, "show", f"{s.commit}:{name}")
            if text is None:
                raise CodetailorError(f"{s.repo} has no {name} at {s.commit[:12]}")
            (licences / f"{s.slug}-{PurePosixPath(name).name}").write_bytes(text)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m finetune.general",
        description="Rebuild the general adapter shipped for the default model.",
        epilog="example: python -m finetune.general --sources ~/mirrors --max-steps 2000",
    )
    p.add_argument("--sources", type=Path, help="checkouts or bare git dirs of the sources")
    p.add_argument("--max-steps", type=int, help="training steps (default: the recipe's)")
    p.add_argument("--out", type=Path, default=TARGET, help=f"where it goes (default {TARGET})")
    p.add_argument("--manifest", type=Path, default=MANIFEST, help="the sources' manifest")
    p.add_argument("--recipe", type=Path, default=RECIPE, help="the finetune config")
    p.add_argument("--work", type=Path, help="scratch (default $CODETAILOR_HOME/general)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--assemble-only", action="store_true", help="build the training folder only")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from lsp_server.cli import run_command, setup_logging

    args = parser().parse_args(argv)
    setup_logging(args.verbose)

    def command(args: argparse.Namespace) -> int:
        print(json.dumps(build(args), indent=2))
        return 0

    return run_command(command, args)


if __name__ == "__main__":
    sys.exit(main())
