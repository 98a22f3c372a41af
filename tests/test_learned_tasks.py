"""What an adapter learned, and what the server does with it: the tasks in its metadata,
SmolLM2's learned FIM format (never for the bare model), and next edits answered by the
base model where the adapter did not learn them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from lsp_server.completion.prompt import (
    FORMATS,
    PREFIX_ONLY,
    build_prompt,
    detect_format,
    trainable_format,
)
from lsp_server.errors import CodetailorError
from lsp_server.model.adapter_meta import META_FILE, AdapterMeta, learned_next_edits
from lsp_server.model.wiring import pick_format
from lsp_server.session.adapter_choice import Registered
from lsp_server.session.model_choice import AdapterSource
from lsp_server.session.session import Session
from lsp_server.session.settings import Settings
from lsp_server.spec import AdapterRef
from tests.fixtures.host import FakeHost
from tests.tiny import SMOLLM2_TOKENS

SMOLLM2 = ["<|endoftext|>", *SMOLLM2_TOKENS]  # SmolLM2's added tokens: no FIM markers
SMOLLM2_FIM = FORMATS["smollm2-fim"]


def test_an_adapter_without_tasks_learned_completion_only() -> None:
    old = AdapterMeta.from_json(json.dumps({"prompt_format": "prefix-only"}))
    assert old.tasks == ["completion"] and not old.learned_next_edits("sweep", 1)
    both = AdapterMeta(
        tasks=["completion", "next_edit"], next_edit_format="sweep", next_edit_format_version=1
    )
    again = AdapterMeta.from_json(both.to_json())
    assert again.learned_next_edits("sweep", 1)
    assert not again.learned_next_edits("zeta", 1)  # another layout was not learned
    assert not again.learned_next_edits("sweep", 2)  # nor another version of it
    with pytest.raises(ValueError, match="tasks"):
        AdapterMeta.from_json(json.dumps({"tasks": "next_edit"}))


def test_learned_next_edits_reads_the_folder(tmp_path: Path) -> None:
    plain, old, new = (tmp_path / n for n in ("plain", "old", "new"))
    for folder in (plain, old, new):
        folder.mkdir()
    (old / META_FILE).write_text(json.dumps({"prompt_format": "prefix-only"}))
    meta = AdapterMeta(tasks=["completion", "next_edit"], next_edit_format="sweep")
    (new / META_FILE).write_text(meta.to_json())
    assert not learned_next_edits(plain, None)  # a plain PEFT folder
    assert not learned_next_edits(old, None)
    assert learned_next_edits(new, None) and learned_next_edits(new, "sweep")
    assert not learned_next_edits(new, "zeta") and not learned_next_edits(new, "nonsense")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / META_FILE).write_text("{")
    assert not learned_next_edits(tmp_path / "broken", None)


def test_smollm2_fim_is_taught_but_never_detected() -> None:
    assert detect_format(SMOLLM2) is PREFIX_ONLY  # the bare model: prefix only
    assert trainable_format(SMOLLM2) is SMOLLM2_FIM  # what finetune teaches it
    assert trainable_format(["<|endoftext|>"]) is PREFIX_ONLY  # no spare markers: none
    starcoder = [*SMOLLM2, "<fim_prefix>", "<fim_suffix>", "<fim_middle>"]
    assert trainable_format(starcoder).name == "starcoder"  # a model's own FIM comes first
    assert set(SMOLLM2_FIM.special_tokens) <= set(SMOLLM2)
    prompt = build_prompt(SMOLLM2_FIM, "def f(x):\n    ", "\n\nprint(f(2))\n", path="a.py")
    assert prompt == (
        "<file_sep>a.py\n<issue_start>def f(x):\n    <issue_comment>\n\nprint(f(2))\n<issue_closed>"
    )


class Tokens:
    """A tokenizer as the format choice reads it."""

    all_special_tokens: list[str] = ["<|endoftext|>"]

    def get_added_vocab(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(SMOLLM2)}


def test_the_suffix_goes_to_the_default_model_only_through_an_adapter_that_learned_it() -> None:
    assert pick_format(None, None, Tokens()) is PREFIX_ONLY
    assert pick_format(None, "smollm2-fim", Tokens()) is SMOLLM2_FIM  # the adapter's record
    assert pick_format("smollm2-fim", "smollm2-fim", Tokens()) is SMOLLM2_FIM
    with pytest.raises(CodetailorError, match="only an adapter trained on them knows"):
        pick_format("smollm2-fim", None, Tokens())  # asked for, on the bare model


# --- the server: next edits from an adapter that learned them, else from the base model ---

ADAPTER = Registered("repo-1", "/adapters/one", "by path")


def started(root: Path, learned: bool, **settings: Any) -> tuple[Session, FakeHost, list[Any]]:
    asked: list[tuple[AdapterRef, str | None]] = []

    def learns(adapter: AdapterRef, layout: str | None) -> bool:
        asked.append((adapter, layout))
        return learned

    source = AdapterSource(lambda r, b=None: ADAPTER, lambda: 1, learned=learns)
    host = FakeHost(None, state="idle")
    session = Session(Settings(model="tiny", **settings), host, adapters=source)
    session.initialize({}, root.as_uri(), "utf-16")
    return session, host, asked


def sets(host: FakeHost) -> Sequence[tuple[str | None, ...]]:
    return host.adapter_sets


def test_an_adapter_that_learned_next_edits_answers_them(tmp_path: Path) -> None:
    session, host, asked = started(tmp_path, learned=True)
    assert sets(host) == [("/adapters/one",)]  # merged alone: nothing else held
    uri = (tmp_path / "m.py").as_uri()
    assert session.models.next_edit_adapter_for(uri, None) == ADAPTER.ref
    assert asked == [(ADAPTER.ref, None)]  # read once, then remembered
    session.models.next_edit_adapter_for(uri, None)
    assert len(asked) == 1


def test_an_adapter_that_did_not_learn_them_leaves_next_edits_to_the_base(tmp_path: Path) -> None:
    session, host, _ = started(tmp_path, learned=False)
    assert sets(host) == [("/adapters/one", None)]  # the adapter answers completions
    uri = (tmp_path / "m.py").as_uri()
    assert session.models.adapter_for(uri) == ADAPTER.ref
    assert session.models.next_edit_adapter_for(uri, None) is None


def test_with_next_edits_off_the_base_is_not_held_for_them(tmp_path: Path) -> None:
    _, host, asked = started(tmp_path, learned=False, next_edit=False)
    assert sets(host) == [("/adapters/one",)] and asked == []


class AskedHost(FakeHost):
    """Records which adapter each next-edit request asked a predictor of."""

    def __init__(self) -> None:
        super().__init__(None, state="idle")
        self.next_edit_asked: list[AdapterRef | None] = []

    def next_edit_for(self, adapter: AdapterRef | None, format_name: str | None = None) -> None:
        self.next_edit_asked.append(adapter)


@pytest.mark.parametrize("learned", [True, False])
async def test_a_next_edit_request_asks_the_adapter_that_answers_them(
    tmp_path: Path, learned: bool
) -> None:
    source = AdapterSource(lambda r, b=None: ADAPTER, lambda: 1, learned=lambda a, f: learned)
    host = AskedHost()
    session = Session(Settings(model="tiny"), host, adapters=source)
    session.initialize({}, tmp_path.as_uri(), "utf-16")
    uri = (tmp_path / "m.py").as_uri()
    session.open(uri, "x = 1\n", 1, "python")
    assert await session.next_edits.suggest(uri, 1, 0, 0) is None  # the fake predicts nothing
    assert host.next_edit_asked == [ADAPTER.ref if learned else None]
