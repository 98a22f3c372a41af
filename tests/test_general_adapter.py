"""The general adapter shipped for the default model (lsp_server/model/shipped.py): served
by default where its base model is, the repository's own adapter first, `none` turning it
off, refused in one line when made for other weights; and its rebuild (finetune/general.py):
the manifest, the training folder of permitted files, the exported folder and its size.

The default model is stood in for by a tiny Llama with SmolLM2's spare tokens: the shipped
table (`shipped.SHIPPED`) is pointed at an adapter made for it here, so no test needs the
real adapter file (the last one, marked slow, checks it where it has been built)."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import pytest
import torch

from finetune import general
from lsp_server.cli import main
from lsp_server.completion.prompt import get_format
from lsp_server.errors import CodetailorError
from lsp_server.model import int4, registry, shipped
from lsp_server.model.factory import completer_over, load_completers
from lsp_server.model.loading import DEFAULT_MODEL, load_model, model_fingerprint
from lsp_server.session.adapter_choice import GENERAL_REASON, choose_adapter
from lsp_server.session.model_choice import AdapterSource
from lsp_server.session.session import Session
from lsp_server.session.settings import Settings
from lsp_server.spec import AdapterRef, ModelSpec, Registered
from tests.fixtures.adapters import git_repo, make_adapter
from tests.fixtures.host import FakeHost
from tests.tiny import SMOLLM2_TOKENS, build_model

TEXT = "import os\n\n\ndef main(path):\n    with open(path"
FIM = get_format("smollm2-fim")


@pytest.fixture(scope="module")
def smol(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama whose tokenizer holds SmolLM2's spare tokens (it can learn smollm2-fim)."""
    return build_model(tmp_path_factory.mktemp("tiny-smol"), special=SMOLLM2_TOKENS, seed=3)


@pytest.fixture(scope="module")
def fingerprint(smol: Path) -> str:
    from transformers import AutoModelForCausalLM

    return model_fingerprint(AutoModelForCausalLM.from_pretrained(smol))


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry and caches of this test's own (adapters get registered here)."""
    monkeypatch.setenv("CODETAILOR_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(shipped, "_warned", set())


def adapter_for(smol: Path, out: Path, *, name: str | None = None, fp: str = "", seed: int = 0):
    """A LoRA adapter for `smol` with `codetailor.json` naming base `name` (default: smol's)
    with fingerprint `fp`, in the learned smollm2-fim format."""
    meta = {
        "base_model": {"name": name or smol.name, "fingerprint": fp or None},
        "prompt_format": FIM.name,
        "prompt_format_version": FIM.version,
    }
    return make_adapter(smol, out, meta, seed=seed)


@pytest.fixture
def shipped_here(smol: Path, fingerprint: str, tmp_path: Path, monkeypatch) -> Path:
    """The general adapter of `smol`, shipped: `shipped.SHIPPED` points at it."""
    folder = adapter_for(smol, tmp_path / "adapters" / "smol-general", fp=fingerprint)
    monkeypatch.setattr(shipped, "SHIPPED", {smol.name: folder})
    return folder


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# --- which shipped adapter serves a base model ------------------------------------------


def test_the_general_adapter_serves_its_base_model_and_no_other(smol, shipped_here):
    assert shipped.shipped_adapter(str(smol)) == AdapterRef(str(shipped_here), shipped.NAME)
    assert shipped.shipped_adapter("Qwen/Qwen2.5-Coder-1.5B") is None
    assert shipped.shipped_adapter(f"HuggingFaceTB/{smol.name}") is None  # another model's id
    assert shipped.is_shipped(shipped_here) and not shipped.is_shipped(smol)


def test_no_folder_means_the_base_model_silently(smol, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(shipped, "SHIPPED", {smol.name: tmp_path / "not-built-yet"})
    assert shipped.shipped_adapter(str(smol)) is None
    assert warnings_of(caplog) == []


def test_the_default_models_adapter_lives_in_the_package():
    folder = shipped.SHIPPED[DEFAULT_MODEL]
    assert folder.parent == Path(shipped.__file__).resolve().parent.parent / "adapters"


def test_an_adapter_named_for_another_base_is_refused_with_one_line(
    smol, tmp_path, monkeypatch, caplog
):
    folder = adapter_for(smol, tmp_path / "general", name="SmolLM2-360M")
    monkeypatch.setattr(shipped, "SHIPPED", {smol.name: folder})
    assert shipped.shipped_adapter(str(smol)) is None
    assert shipped.shipped_adapter(str(smol)) is None
    [line] = warnings_of(caplog)
    assert "SmolLM2-360M" in line and "serving the base model" in line


def test_an_incomplete_folder_is_refused_with_one_line(smol, shipped_here, caplog):
    (shipped_here / "adapter_model.safetensors").unlink()
    assert shipped.shipped_adapter(str(smol)) is None
    [line] = warnings_of(caplog)
    assert "adapter_model.safetensors" in line


# --- where `auto` (or nothing) falls back on it -----------------------------------------

GENERAL = AdapterRef("/pkg/adapters/general", "general")
MINE = Registered("repo-1234abcd", "/adapters/one", "by path")


def test_auto_falls_back_on_the_general_adapter_and_the_repositorys_own_wins():
    fallback = choose_adapter("auto", "/src/repo", None, general=GENERAL)
    assert fallback.ref == GENERAL and fallback.reason == f"none registered: {GENERAL_REASON}"
    assert choose_adapter("auto", None, None, general=GENERAL).ref == GENERAL
    assert choose_adapter("auto", "/src/repo", MINE, general=GENERAL).adapter == "/adapters/one"
    other = Registered("r", "/a", "by path", refused="trained for base model 'x', not 'y'")
    refused = choose_adapter("auto", "/src/repo", other, general=GENERAL)
    assert refused.ref == GENERAL and "trained for base model 'x'" in refused.reason
    assert choose_adapter("none", "/src/repo", None, general=GENERAL).ref is None
    fixed = choose_adapter("/my/lora", "/src/repo", None, general=GENERAL)
    assert fixed.adapter == "/my/lora"


def session_with(root: Path, registered: dict, **settings) -> tuple[Session, FakeHost]:
    source = AdapterSource(
        lambda r, base: registered.get(r), lambda: len(registered), general=lambda m: GENERAL
    )
    host = FakeHost(None, state="idle")
    session = Session(Settings(model="tiny", **settings), host, adapters=source)
    session.initialize({}, f"file://{root}", "utf-16")
    return session, host


def test_the_server_loads_the_general_adapter_and_says_why(tmp_path):
    session, host = session_with(tmp_path, {})
    assert [s.adapter for s in host.loads] == [GENERAL.path]
    assert session.status()["adapterChoice"]["reason"] == f"none registered: {GENERAL_REASON}"
    _, mine = session_with(tmp_path, {str(tmp_path): MINE})
    assert [s.adapter for s in mine.loads] == ["/adapters/one"]
    _, off = session_with(tmp_path, {}, adapter="none")
    assert [s.adapter for s in off.loads] == [None]
    remote, _ = session_with(tmp_path, {}, engine="openai:http://127.0.0.1:9")
    assert remote.status()["adapterChoice"]["adapter"] is None  # it serves what it was given


# --- complete: the same choice, from the command line -----------------------------------


def complete_json(file: Path, smol: Path, capsys, *extra: str) -> dict:
    argv = ["complete", f"{file}:5:5", "--model", str(smol), "--json", "--max-tokens", "4"]
    assert main([*argv, *extra]) == 0
    return json.loads(capsys.readouterr().out.splitlines()[-1])


def test_complete_serves_the_general_adapter_unless_none_or_the_repository_has_its_own(
    smol, fingerprint, shipped_here, tmp_path, capsys
):
    repo = git_repo(tmp_path / "repo")
    file = repo / "src" / "app.py"
    file.write_text(TEXT + ")\n")
    first = complete_json(file, smol, capsys)
    assert first["adapter"] == str(shipped_here) and GENERAL_REASON in first["adapter_reason"]
    assert first["prompt_format"] == FIM.name
    off = complete_json(file, smol, capsys, "--adapter", "none")
    assert off["adapter"] is None and off["prompt_format"] != FIM.name
    own = adapter_for(smol, tmp_path / "own", fp=fingerprint, seed=1)
    registry.register_adapter(repo, own)
    mine = complete_json(file, smol, capsys)
    assert mine["adapter"] == str(own) and "registered for" in mine["adapter_reason"]


def test_adapters_show_names_the_general_adapter_where_a_repository_has_none(
    smol, tmp_path, monkeypatch, capsys
):
    folder = adapter_for(smol, tmp_path / "general", name=DEFAULT_MODEL)
    monkeypatch.setattr(shipped, "SHIPPED", {DEFAULT_MODEL: folder})
    repo = git_repo(tmp_path / "repo")
    assert main(["adapters", "show", str(repo)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["path"] == str(folder) and GENERAL_REASON in shown["matched_by"]


# --- loading it: refused for other weights; int4 -----------------------------------------


def greedy(completer) -> str:
    return completer.complete(TEXT, len(TEXT), max_tokens=8).text


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_a_general_adapter_for_other_weights_is_refused_at_load_and_the_base_serves(
    smol, tmp_path, monkeypatch, caplog, dtype
):
    folder = adapter_for(smol, tmp_path / "general", fp="0123456789abcdef")
    monkeypatch.setattr(shipped, "SHIPPED", {smol.name: folder})
    ref = shipped.shipped_adapter(str(smol))
    assert ref is not None  # its name fits: only the loaded weights tell
    spec = ModelSpec(model=str(smol), dtype=dtype)
    loaded = load_completers(spec, [ref])
    assert loaded.model.adapter is None and loaded.mode in ("base", "int8")
    assert loaded.answering is None and "other weights" in loaded.failed[ref]
    base = load_completers(spec, [None])
    assert greedy(loaded.completer) == greedy(base.completer)
    [line] = warnings_of(caplog)
    assert "0123456789abcdef" in line and "serving the base model" in line
    load_completers(spec, [ref])
    assert len(warnings_of(caplog)) == 1  # once per process


@pytest.mark.skipif(not int4.kernel_available(), reason="torch without int4 kernels")
def test_int4_serves_the_general_adapter_unmerged_over_the_kept_packed_weights(smol, shipped_here):
    """The packed 4-bit weights are the base's alone (the adapter stays unmerged in float
    on top, int4.py), so the kept copy is keyed by the base weights and serves every adapter:
    the served path, a load with the adapter applied directly and a load reading the packed
    weights back all give the same greedy completion and logits; the base gives others."""
    ref = shipped.shipped_adapter(str(smol))
    served = load_completers(ModelSpec(model=str(smol), dtype="int4"), [ref])
    assert served.mode == "unmerged" and served.model.adapter is not None
    direct = load_model(str(smol), dtype="int4", adapter=shipped_here)  # packed weights read back
    base = load_model(str(smol), dtype="int4")
    ids = torch.tensor([[5, 17, 33, 2, 80, 41, 7, 9, 12, 3]])
    with torch.no_grad():
        served.resident.select(ref.path)
        logits = served.model.model(ids).logits
        assert torch.equal(logits, direct.model(ids).logits)
        assert not torch.allclose(logits, base.model(ids).logits)
    fmt = served.completer.format
    reference = completer_over(direct, prompt_format=fmt, reuse=False)
    assert greedy(served.completer) == greedy(reference)


# --- the folder as it ships: size, package data ------------------------------------------


def test_a_folder_over_the_size_limit_is_refused_in_one_line(tmp_path):
    folder = tmp_path / "general"
    folder.mkdir()
    (folder / "adapter_model.safetensors").write_bytes(b"x" * 3000)
    (folder / "LICENSES").mkdir()
    (folder / "LICENSES" / "a").write_bytes(b"y" * 100)
    assert shipped.check_size(folder, limit=4000) == 3100
    with pytest.raises(CodetailorError) as over:
        shipped.check_size(folder, limit=3000)
    assert "\n" not in str(over.value) and "over the" in str(over.value)


def test_package_data_carries_every_file_of_the_shipped_folder(tmp_path):
    import glob

    import tomllib

    root = Path(__file__).resolve().parent.parent
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = config["package-data"]["lsp_server"]
    package = tmp_path / "lsp_server"
    folder = package / shipped.SHIPPED[DEFAULT_MODEL].relative_to(root / "lsp_server")
    files = [*shipped.REQUIRED, "finetune.yaml", "SOURCES.md", "LICENSES/psf+requests-NOTICE"]
    for name in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("x")
    matched = {Path(p) for pat in patterns for p in glob.glob(str(package / pat))}
    assert {folder / n for n in files} <= matched
    assert "general_sources.json" in config["package-data"]["finetune"]


# --- the rebuild: manifest, training folder, export --------------------------------------


def test_the_checked_in_manifest_pins_its_sources():
    sources = general.read_manifest()
    assert [s.repo for s in sources] == [
        "TheAlgorithms/Python",
        "keon/algorithms",
        "psf/requests",
        "more-itertools/more-itertools",
    ]
    assert {s.license for s in sources} == {"MIT", "Apache-2.0"}
    assert all(s.extensions == (".py",) and len(s.commit) == 40 for s in sources)


def test_a_manifest_with_an_evaluation_repository_or_bad_pins_is_refused(tmp_path):
    bad = {
        "repo": "pallets/click",
        "url": "http://github.com/pallets/click",
        "commit": "abc",
        "license": "MIT",
        "license_files": ["LICENSE"],
        "folders": ["src"],
        "extensions": ["py"],
    }
    manifest = tmp_path / "sources.json"
    manifest.write_text(json.dumps({"sources": [bad]}))
    with pytest.raises(CodetailorError) as refused:
        general.read_manifest(manifest)
    message = str(refused.value)
    for problem in ("evaluation repository", "url must be", "commit must be", "extensions"):
        assert problem in message


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)
    return done.stdout.decode().strip()


@pytest.fixture
def source_repo(tmp_path: Path) -> tuple[general.Source, Path]:
    """A source with a commit holding files that are taken and files that are not."""
    repo = tmp_path / "mirrors" / "acme+tools" / "repo"
    files = {
        "pkg/a.py": "def a():\n    return 1\n",
        "pkg/sub/b.py": "import os\n",
        "pkg/notes.txt": "not python\n",
        "pkg/vendor/v.py": "x = 1\n",
        "pkg/click/core.py": "def echo():\n    pass\n",
        "pkg/gen_pb2.py": "x = 2\n",
        "other/c.py": "def c():\n    pass\n",
        "LICENSE": "MIT License\n\nCopyright (c) Acme\n",
    }
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    (repo / "pkg" / "link.py").symlink_to("/etc/hostname")
    git(repo.parent.parent, "init", "-q", str(repo))
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    (repo / "pkg" / "a.py").write_text("uncommitted\n")  # a work tree change: never taken
    commit = git(repo, "rev-parse", "HEAD")
    source = general.Source(
        "acme/tools",
        "https://github.com/acme/tools",
        commit,
        "MIT",
        ("LICENSE",),
        ("pkg",),
        (".py",),
    )
    return source, repo


def test_the_training_folder_holds_the_permitted_files_as_committed(source_repo, tmp_path):
    source, repo = source_repo
    assert general.locate(source, tmp_path / "mirrors", tmp_path / "cache") == repo
    stats = general.assemble([(source, repo)], tmp_path / "corpus", 512_000)
    taken = tmp_path / "corpus" / "acme+tools"
    found = sorted(p.relative_to(taken).as_posix() for p in taken.rglob("*") if p.is_file())
    assert found == ["pkg/a.py", "pkg/sub/b.py"]
    assert (taken / "pkg" / "a.py").read_text() == "def a():\n    return 1\n"
    skipped = stats["acme/tools"]["skipped"]
    assert skipped == {
        "extension": 1,
        "evaluation_copy": 1,
        "vendored": 1,
        "generated": 1,
        "not_a_file": 1,
    }


def test_a_fetched_source_is_read_from_the_cache_and_only_https_is_fetched(source_repo, tmp_path):
    from lsp_server.repo.git import fetch_commit

    source, repo = source_repo
    cache = tmp_path / "cache"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(cache / f"{source.slug}.git"))
    assert general.locate(source, None, cache) == cache / f"{source.slug}.git"
    for url in (f"file://{repo}", f"ext::sh -c touch% {tmp_path}/ran", str(repo)):
        assert not fetch_commit(url, source.commit, tmp_path / "fetched")
    assert not (tmp_path / "ran").exists() and not (tmp_path / "fetched").exists()


def test_a_missing_source_says_where_it_looked(source_repo, tmp_path):
    source, _ = source_repo
    with pytest.raises(CodetailorError, match="no checkout of acme/tools"):
        general.locate(source, tmp_path / "elsewhere", tmp_path / "cache")


def test_the_exported_folder_is_what_the_server_serves(
    smol, fingerprint, source_repo, tmp_path, monkeypatch
):
    source, repo = source_repo
    trained = adapter_for(smol, tmp_path / "work" / "adapter", fp=fingerprint)
    (trained / "finetune.yaml").write_text(
        f"repo: {tmp_path}/corpus\nout: {trained}\ninit_adapter: {tmp_path}/old\nseq_len: 512\n"
    )
    started = {"started_from": {"path": f"{tmp_path}/old", "created": "2026-12-01"}}
    trained_meta = json.loads((trained / "codetailor.json").read_text())
    (trained / "codetailor.json").write_text(json.dumps(trained_meta | {"training": started}))
    corpus = {source.repo: {"files": 2}}
    out = tmp_path / "adapters" / "smol-general"
    size = general.export(trained, out, [(source, repo)], corpus)
    assert size == shipped.folder_bytes(out) <= shipped.MAX_BYTES
    from safetensors.torch import load_file

    weights = load_file(str(out / "adapter_model.safetensors"))
    assert {t.dtype for t in weights.values()} == {torch.float16}
    meta = json.loads((out / "codetailor.json").read_text())
    assert meta["repository"] == {"name": "smol-general", "sources": [source.as_dict()]}
    assert source.commit in (out / "SOURCES.md").read_text()
    assert str(tmp_path) not in (out / "finetune.yaml").read_text() + json.dumps(meta)
    assert meta["training"]["started_from"]["created"] == "2026-12-01"
    assert (out / "adapter_model.safetensors").stat().st_mode & 0o444 == 0o444  # all may read
    assert "Copyright (c) Acme" in (out / "LICENSES" / "acme+tools-LICENSE").read_text()
    monkeypatch.setattr(shipped, "SHIPPED", {smol.name: out})
    loaded = load_completers(ModelSpec(model=str(smol)), [shipped.shipped_adapter(str(smol))])
    assert loaded.model.adapter is not None and loaded.prompt_format == FIM.name
    with pytest.raises(CodetailorError, match="over the"):
        monkeypatch.setattr(shipped, "MAX_BYTES", 1000)
        general.export(trained, out, [(source, repo)], corpus)
    assert (out / "adapter_model.safetensors").is_file()  # the old one stays


# --- the real one, where it has been built -------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(
    not shipped.SHIPPED[DEFAULT_MODEL].is_dir(), reason="the general adapter is not built yet"
)
def test_the_shipped_adapter_loads_on_the_default_model_in_the_learned_format(
    session_home, monkeypatch
):
    monkeypatch.setenv("CODETAILOR_HOME", str(session_home))  # the slow tests' conversion
    ref = shipped.shipped_adapter(None)
    assert ref is not None
    shipped.check_size(Path(ref.path))
    loaded = load_completers(ModelSpec(), [ref])
    assert loaded.model.adapter is not None and not loaded.failed
    assert loaded.prompt_format == "smollm2-fim"
    assert "SOURCES.md" in {p.name for p in Path(ref.path).iterdir()}
    before, after = "def add(a, b):\n    return ", "\n\n\nprint(add(1, 2))\n"
    result = loaded.completer.complete(before + after, len(before), max_tokens=8)
    assert "print(add(1, 2))" in result.prompt  # the suffix reaches the default model
