"""The adapter registry: keyed by repository path and remote URL, atomic, and published for vLLM."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from lsp_server import cli
from lsp_server.errors import CodetailorError
from lsp_server.model import registry
from lsp_server.spec import folder
from tests.fixtures.adapters import fake_adapter, git_repo


@pytest.fixture(autouse=True)
def _own_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("CODETAILOR_HOME", str(home))
    return home


@pytest.mark.parametrize(
    "url",
    [
        "git@github.com:Acme/widgets.git",
        "https://github.com/Acme/widgets",
        "https://user:token@GitHub.com/Acme/widgets.git/",
        "ssh://git@github.com:22/Acme/widgets.git",
    ],
)
def test_remote_urls_of_one_repository_normalise_alike(url: str):
    assert registry.normalize_remote(url) == "github.com/Acme/widgets"


def test_a_fresh_clone_elsewhere_finds_the_adapter_by_its_remote(tmp_path: Path):
    repo = git_repo(tmp_path / "work" / "widgets")
    entry = registry.register_adapter(repo, fake_adapter(tmp_path / "lora"))
    assert entry.remote == "github.com/Acme/widgets"
    assert (entry.base_model, entry.prompt_format, entry.commit) == (
        "smollm2-135m",
        "prefix-only",
        "abc123",
    )
    assert entry.name.startswith("widgets-")
    assert registry.lookup_match(repo / "src").reason == "repository path"  # a subfolder
    clone = git_repo(tmp_path / "elsewhere" / "clone", "https://github.com/Acme/widgets")
    match = registry.lookup_match(clone)
    assert match is not None and match.reason == "remote URL" and match.entry == entry
    assert registry.lookup(git_repo(tmp_path / "other", "git@github.com:Acme/gadgets")) is None
    assert registry.lookup(tmp_path / "not-a-repo") is None


def test_the_newest_adapter_wins_and_a_vanished_folder_is_passed_over(tmp_path: Path):
    repo = git_repo(tmp_path / "widgets")
    first = registry.register_adapter(repo, fake_adapter(tmp_path / "a", weights=b"1"))
    second = registry.register_adapter(repo, fake_adapter(tmp_path / "b", weights=b"2"))
    assert first.name != second.name  # new weights, new name: engines cache by name
    assert registry.lookup(repo) == second
    (tmp_path / "b" / "adapter_config.json").unlink()
    assert registry.lookup(repo) == first
    # The same folder registered again replaces its entry instead of adding one.
    registry.register_adapter(repo, tmp_path / "a")
    assert [e.path for e in registry.load()].count(str(tmp_path / "a")) == 1


def test_the_stamp_changes_with_every_registration(tmp_path: Path):
    repo = git_repo(tmp_path / "widgets")
    assert registry.stamp() is None
    registry.register_adapter(repo, fake_adapter(tmp_path / "a", weights=b"1"))
    first = registry.stamp()
    registry.register_adapter(repo, fake_adapter(tmp_path / "b", weights=b"2"))
    assert first is not None and registry.stamp() != first  # a new file replaced the old


def test_an_adapter_is_named_by_its_folder_or_its_registered_name(tmp_path: Path):
    entry = registry.register_adapter(git_repo(tmp_path / "widgets"), fake_adapter(tmp_path / "a"))
    assert folder(registry.adapter_ref(entry.name)) == str(tmp_path / "a")
    assert folder(registry.adapter_ref(str(tmp_path / "a"))) == str(tmp_path / "a")
    assert folder(registry.adapter_ref("no-such-adapter")) == "no-such-adapter"
    assert registry.adapter_ref(None) is None


def test_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    repo = git_repo(tmp_path / "widgets")
    registry.register_adapter(repo, fake_adapter(tmp_path / "a"))
    before = registry.registry_path().read_text()

    def broken_dump(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(registry.json, "dump", broken_dump)
    with pytest.raises(OSError):
        registry.register_adapter(repo, fake_adapter(tmp_path / "b", weights=b"2"))
    assert registry.registry_path().read_text() == before
    assert sorted(p.name for p in registry.registry_path().parent.iterdir()) == ["registry.json"]


def test_a_corrupt_registry_is_one_clear_error(tmp_path: Path):
    registry.registry_path().parent.mkdir(parents=True)
    registry.registry_path().write_text("{not json")
    with pytest.raises(CodetailorError, match="adapter registry"):
        registry.load()


def test_publish_writes_what_the_vllm_resolver_reads_and_nothing_pickled(tmp_path: Path):
    repo = git_repo(tmp_path / "widgets")
    entry = registry.register_adapter(repo, fake_adapter(tmp_path / "lora"))
    out = registry.publish(entry.name, tmp_path / "resolver", base="HuggingFaceTB/SmolLM2-135M")
    assert out == tmp_path / "resolver" / entry.name
    assert sorted(p.name for p in out.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "codetailor.json",
    ]
    config = json.loads((out / "adapter_config.json").read_text())
    # vLLM's filesystem resolver loads an adapter only for the base it serves, by name.
    assert config == {
        "peft_type": "LORA",
        "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M",
        "r": 8,
    }
    assert (out / "adapter_model.safetensors").read_bytes() == b"w1"
    # Publishing again (a new training run) replaces the folder; --name picks another.
    (tmp_path / "lora" / "adapter_model.safetensors").write_bytes(b"w2")
    registry.publish(str(tmp_path / "lora"), tmp_path / "resolver", base="smollm2-135m")
    assert (out / "adapter_model.safetensors").read_bytes() == b"w2"
    named = registry.publish(entry.name, tmp_path / "resolver", name="team-widgets")
    assert json.loads((named / "adapter_config.json").read_text())["base_model_name_or_path"] == (
        "smollm2-135m"
    )


def test_publish_refuses_an_adapter_for_another_base(tmp_path: Path):
    adapter = fake_adapter(tmp_path / "lora", base="Qwen/Qwen2.5-Coder-1.5B")
    with pytest.raises(CodetailorError, match="trained for base model 'Qwen/Qwen2.5-Coder-1.5B'"):
        registry.publish(str(adapter), tmp_path / "resolver", base="bigcode/starcoder2-3b")
    assert not (tmp_path / "resolver" / "lora").exists()
    (adapter / "adapter_model.safetensors").unlink()
    with pytest.raises(CodetailorError, match="lacks adapter_model.safetensors"):
        registry.publish(str(adapter), tmp_path / "resolver")


def test_adapters_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    repo = git_repo(tmp_path / "widgets")
    assert cli.main(["adapters", "list"]) == 0
    assert "no adapters registered" in capsys.readouterr().out
    entry = registry.register_adapter(repo, fake_adapter(tmp_path / "lora"))
    assert cli.main(["adapters", "list", "--json"]) == 0
    assert [e["name"] for e in json.loads(capsys.readouterr().out)] == [entry.name]
    assert cli.main(["adapters", "show", str(repo)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["name"], shown["matched_by"]) == (entry.name, "repository path")
    resolver = tmp_path / "resolver"
    assert cli.main(["adapters", "publish", entry.name, "--to", str(resolver)]) == 0
    assert capsys.readouterr().out.strip() == str(resolver / entry.name)
    assert cli.main(["adapters", "publish", entry.name, "--to", str(resolver), "--base", "x"]) == 2
    assert "trained for base model" in capsys.readouterr().err
    assert cli.main(["adapters", "remove", entry.name]) == 0
    assert registry.load() == [] and (tmp_path / "lora").is_dir()  # the folder stays
    assert cli.main(["adapters", "show", entry.name]) == 2


def test_finetune_registers_what_it_finished_and_only_warns_when_it_cannot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    from finetune.cli import register_finished

    repo = git_repo(tmp_path / "widgets")
    register_finished(str(repo), str(fake_adapter(tmp_path / "lora")))
    assert "registered adapter widgets-" in capsys.readouterr().err
    assert registry.lookup(repo).path == str(tmp_path / "lora")
    monkeypatch.setenv("CODETAILOR_HOME", str(tmp_path / "lora" / "finetune.yaml"))  # a file
    register_finished(str(repo), str(tmp_path / "lora"))
    assert "warning: adapter not registered" in capsys.readouterr().err


def test_auto_finds_the_workspace_adapter_for_either_engine(tmp_path: Path):
    from lsp_server.model.wiring import remote_adapter
    from lsp_server.session.adapter_choice import choose_adapter

    repo = git_repo(tmp_path / "widgets")
    entry = registry.register_adapter(repo, fake_adapter(tmp_path / "lora"))
    choice = choose_adapter("auto", str(repo), registry.registered_for(repo))
    assert choice.adapter == entry.path and choice.reason.endswith("(by path)")
    assert folder(registry.adapter_ref(choice.adapter)) == entry.path  # local: loaded from there
    assert remote_adapter(choice.ref)[0] == entry.name  # remote: its name as `model`
    assert registry.adapter_ref("auto") is None and registry.adapter_ref("none") is None


def test_an_unreadable_registry_means_the_base_model_not_a_dead_server(tmp_path: Path):
    repo = git_repo(tmp_path / "widgets")
    registry.registry_path().parent.mkdir(parents=True, exist_ok=True)
    registry.registry_path().write_text("{not json")
    assert registry.registered_for(repo) is None


def test_auto_passes_over_an_adapter_trained_for_another_base_model(tmp_path: Path):
    from lsp_server.session.adapter_choice import choose_adapter

    repo = git_repo(tmp_path / "widgets")
    mine = registry.register_adapter(repo, fake_adapter(tmp_path / "small"))
    big = fake_adapter(tmp_path / "big", base="Qwen/Qwen2.5-Coder-1.5B")
    registry.register_adapter(repo, big, name="widgets-qwen")
    # the newest is for another base: the older one, for the default model, answers
    assert registry.registered_for(repo).path == mine.path
    qwen = registry.registered_for(repo, "Qwen2.5-Coder-1.5B")
    assert qwen is not None and qwen.path == str(tmp_path / "big") and qwen.refused is None
    registry.remove(mine.name)
    refused = registry.registered_for(repo)
    assert refused is not None
    assert refused.refused == (
        "trained for base model 'Qwen/Qwen2.5-Coder-1.5B', not 'smollm2-135m'"
    )
    choice = choose_adapter("auto", str(repo), refused)
    assert choice.adapter is None and "not 'smollm2-135m': base model" in choice.reason


def test_adapters_list_prints_no_terminal_escapes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 28: a remote URL holding escape codes was printed raw by `adapters list`."""
    evil = "https://example.com/\x1b]0;pwned\x07\x1b[2J/repo.git"
    assert registry.normalize_remote(evil) is None
    repo = git_repo(tmp_path / "wid\x1b[31mgets", remote=evil)
    entry = registry.register_adapter(repo, fake_adapter(tmp_path / "lora"))
    # a registry written by an older version, which kept the URL
    registry.save([dataclasses.replace(e, remote=evil) for e in registry.load()])
    assert cli.main(["adapters", "list"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\\x1b]0;pwned" in out
    assert out.count("\t") == 3 and entry.name.replace("\x1b", "\\x1b") in out


def test_publish_refuses_a_huge_name_and_survives_a_symlinked_old_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 28: `adapters publish` tracebacked on a 10,000-char --name and a symlinked
    `.NAME.old`."""
    adapter = fake_adapter(tmp_path / "lora")
    resolver = tmp_path / "resolver"
    args = ["adapters", "publish", str(adapter), "--to", str(resolver)]
    assert cli.main([*args, "--name", "a" * 10_000]) == 2
    assert "at most 128" in capsys.readouterr().err
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep")
    resolver.mkdir()
    (resolver / ".team.old").symlink_to(elsewhere)
    for _ in range(2):  # the second run moves the first aside through `.team.old`
        assert cli.main([*args, "--name", "team"]) == 0, capsys.readouterr().err
    assert (resolver / "team" / "adapter_model.safetensors").is_file()
    assert (elsewhere / "keep.txt").read_text() == "keep"  # not followed
    assert not (resolver / ".team.old").exists()
