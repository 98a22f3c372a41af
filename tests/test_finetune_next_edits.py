"""Next-edit training examples from history: the miner's examples before the cut, partly
typed ones, the predictor's own layout, the token budget, and loss on the target only."""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from finetune import train as train_module
from finetune.config import FinetuneConfig
from finetune.data.examples import IGNORE, Blocks, pack_examples
from finetune.data.next_edits import Layout, build, partly_typed
from finetune.evaluate import to_batch
from finetune.train import run
from lsp_server.completion.next_edit import EditWindow, NextEditRequest, RecentEdit
from lsp_server.completion.next_edit_prompt import next_edit_format
from lsp_server.model.adapter_meta import AdapterMeta
from lsp_server.model.factory import load_completers
from lsp_server.model.next_edit import NextEditPredictor, training_pair
from lsp_server.repo.edit_examples import NO_EDIT_SHARE, NextEditExample
from lsp_server.repo.history import mine_split
from lsp_server.spec import AdapterRef, ModelSpec
from tests.fixtures.fakes import ScriptedEngine
from tests.fixtures.history import make_history_repo
from tests.tiny import SMOLLM2_TOKENS, build_model

FMT = next_edit_format(None)  # Sweep's layout, `<|file_sep|>` as plain text here


def encode(text: str) -> list[int]:
    return [ord(c) for c in text]


class Chars:
    """One token per character, as the predictor's tokenizer."""

    unk_token_id = None

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return encode(text)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return "".join(chr(i) for i in ids)

    def convert_tokens_to_ids(self, token: str) -> int | None:
        return None


def example(current: str, expected: str, history: tuple[RecentEdit, ...] = ()) -> NextEditExample:
    window = EditWindow(3, current, current, 0)
    return NextEditExample("c0ffee", NextEditRequest("pkg/a.py", history, window), expected, "at")


@pytest.fixture(scope="module")
def history_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_history_repo(tmp_path_factory.mktemp("history"))


def test_a_partly_typed_edit_stops_at_a_pause_with_the_cursor_there() -> None:
    before = "def area(w):\n    return w\n"
    after = "def area(w, h):\n    return w * h\n"
    earlier = RecentEdit("pkg/b.py", "x = 1", "x = 2")
    typed = partly_typed(example(before, after, (earlier,)), random.Random(0))
    assert typed is not None and typed.expected == after and typed.category == "at"
    now, cursor = typed.request.window.current, typed.request.window.cursor
    # What is typed is the start of the change; the text after the change is untouched.
    assert now[:cursor] == after[:cursor] and now.endswith("\n") and now[cursor:] == "\n"
    assert before != now != after
    assert after[cursor - 1] in " (,.:=\n" and not after[cursor].isspace()  # a natural pause
    assert typed.request.window.original == before  # the window before the recent edits
    assert typed.request.history[0] == earlier
    typing = typed.request.history[-1]  # the typing so far is the latest recent edit
    assert typing.path == "pkg/a.py" and typing.before == "def area(w):\n    return w"
    assert typing.after == now.removesuffix("\n")


def test_a_change_without_a_pause_is_not_partly_typed() -> None:
    assert partly_typed(example("x = 1\n", "x = 2\n"), random.Random(0)) is None


def test_the_training_pair_is_what_the_predictor_sends_and_reads_back() -> None:
    history = (RecentEdit("pkg/a.py", "def area(w):", "def area(w, h):"),)
    current = "def area(w, h):\n    return w\n"
    expected = "def area(w, h):\n    return w * h\n"
    request = NextEditRequest("pkg/a.py", history, EditWindow(0, current, current, 0))
    prompt, target = training_pair(request, expected, FMT, encode)
    engine = ScriptedEngine("".join(map(chr, target)))
    predictor = NextEditPredictor(engine, Chars(), FMT)
    answer = predictor.predict(request, cancel=threading.Event())
    assert engine.prompts == [prompt]  # the prompt trained on is the one served
    assert answer.updated == expected  # the target trained on reads back as the window
    assert "".join(map(chr, target)).endswith(FMT.end_marker)


def test_examples_come_from_commits_before_the_cut_within_the_budget(history_repo: Path) -> None:
    history, earlier, held = mine_split(history_repo, 0.25)
    layout = Layout(FMT, encode, window_lines=5, history_tokens=192, max_tokens=4096)
    everything = build(history, earlier, layout, budget=10**9, partial_rate=0.0, seed=0)
    assert everything.pairs and everything.commits_read == len(earlier)
    assert set(everything.commits) <= {c.sha for c in earlier}
    assert not set(everything.commits) & {c.sha for c in held}
    # The miner's share of "no edit" windows (the answer is the current window).
    share = everything.no_edit / len(everything.pairs)
    assert abs(share - NO_EDIT_SHARE) <= 0.1
    for prompt, target in everything.pairs:
        text = "".join(map(chr, prompt + target))
        assert text.endswith(FMT.end_marker) and "updated/app.py\n" in text
    # A budget of a few examples takes the newest commits' examples, and stops there.
    few = sum(len(p) + len(t) for p, t in everything.pairs[-3:])
    cut = build(history, earlier, layout, budget=few, partial_rate=0.0, seed=0)
    assert cut.pairs == everything.pairs[-len(cut.pairs) :] and len(cut.pairs) <= 3
    assert cut.tokens >= few or len(cut.pairs) == 3


def test_some_edits_are_partly_typed_and_too_long_examples_are_left_out(
    history_repo: Path,
) -> None:
    history, earlier, _ = mine_split(history_repo, 0.25)
    layout = Layout(FMT, encode, window_lines=5, history_tokens=192, max_tokens=4096)
    plain = build(history, earlier, layout, budget=10**9, partial_rate=0.0, seed=0)
    typed = build(history, earlier, layout, budget=10**9, partial_rate=1.0, seed=0)
    assert typed.partly_typed > 0 and plain.partly_typed == 0
    assert typed.edit_due == plain.edit_due and typed.no_edit == plain.no_edit  # replaced
    short = Layout(FMT, encode, window_lines=5, history_tokens=192, max_tokens=200)
    none_fit = build(history, earlier, short, budget=10**9, partial_rate=0.0, seed=0)
    assert not none_fit.pairs and none_fit.dropped_too_long == len(plain.pairs)


def test_packed_examples_stay_whole_and_only_targets_are_learned() -> None:
    pairs = [([1, 2, 3], [4, 5]), ([6, 7], [8]), ([9] * 6, [10, 11])]
    blocks = pack_examples(pairs, seq_len=8)
    assert blocks.ids == [[1, 2, 3, 4, 5, 6, 7, 8], [9] * 6 + [10, 11]]
    assert blocks.labels == [
        [IGNORE] * 3 + [4, 5] + [IGNORE] * 2 + [8],
        [IGNORE] * 6 + [10, 11],
    ]
    assert blocks.loss_tokens == 5 and blocks.tokens == 16
    mixed = Blocks([[20, 21, 22]], [3]) + blocks  # a FIM row learns every token
    ids, mask, labels = to_batch(mixed, [0, 1])
    assert ids.shape == (2, 8) and mask[0].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert labels[0].tolist() == [20, 21, 22] + [IGNORE] * 5
    assert labels[1].tolist() == blocks.labels[0]
    # A checkpoint's data fingerprint sees what is learned, not only the ids.
    assert mixed.fingerprint() != Blocks(mixed.ids, mixed.lengths).fingerprint()


# --- finetune end to end: one adapter learns both tasks (tiny model, SmolLM2's tokens) ---

TRAIN = {
    "seq_len": 64,
    "next_edit_seq_len": 512,
    "batch_size": 2,
    "max_steps": 3,
    "eval_every": 0,
    "patience": 0,
    "match_samples": 0,
    "holdout": 0.0,  # one file: none can be held out; every commit is before the cut
    "checkpoint_every": 10,
}


@pytest.fixture(scope="module")
def smol_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama whose tokenizer holds SmolLM2's added tokens (no FIM markers)."""
    return build_model(tmp_path_factory.mktemp("tiny-smol"), special=SMOLLM2_TOKENS, seed=2)


def finetuned(repo: Path, out: Path, model: Path, **changes: Any) -> dict[str, Any]:
    values = TRAIN | {"repo": str(repo), "out": str(out), "model": str(model)} | changes
    summary = run(FinetuneConfig.from_dict(values), progress=False)
    assert summary is not None
    return summary


@pytest.mark.usefixtures("one_thread")
def test_one_adapter_learns_fim_and_next_edits_and_the_server_serves_both(
    history_repo: Path, smol_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "both"
    summary = finetuned(history_repo, out, smol_dir, prompt_format="smollm2-fim")
    data = summary["data"]
    assert summary["tasks"] == ["completion", "next_edit"]
    assert summary["prompt_format"] == "smollm2-fim"  # FIM taught to a model without FIM
    assert data["next_edit_examples"] > 0 and data["next_edit_commits_read"] == 13
    assert data["train_loss_tokens"] < data["train_tokens"]  # next-edit prompts not learned
    meta = AdapterMeta.from_json((out / "codetailor.json").read_text())
    assert meta.tasks == ["completion", "next_edit"] and meta.learned_next_edits("sweep", 1)
    assert meta.prompt_format == "smollm2-fim" and meta.prompt_format_version == 1
    # Served: the adapter's FIM format sends the suffix; the bare model's does not.
    loaded = load_completers(ModelSpec(model=str(smol_dir), device="cpu"), [AdapterRef(str(out))])
    with_adapter = loaded.completer.prompt_for("def f(x):\n    ", "\nprint(1)\n", path="a.py")
    assert loaded.completer.format.name == "smollm2-fim" and "print(1)" in with_adapter
    bare = load_completers(ModelSpec(model=str(smol_dir), device="cpu"))
    assert bare.completer.format.name == "prefix-only"
    assert "print(1)" not in bare.completer.prompt_for("def f(x):\n    ", "\nprint(1)\n")


@pytest.mark.usefixtures("one_thread")
def test_next_edit_false_trains_completion_only(
    history_repo: Path, smol_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "fim-only"
    summary = finetuned(history_repo, out, smol_dir, next_edit=False, max_steps=1)
    assert summary["tasks"] == ["completion"] and "next_edit_examples" not in summary["data"]
    meta = AdapterMeta.from_json((out / "codetailor.json").read_text())
    assert meta.tasks == ["completion"] and meta.next_edit_format is None
    assert not meta.learned_next_edits("sweep", 1)


@pytest.mark.usefixtures("one_thread")
def test_the_base_figure_uses_the_format_the_bare_model_is_served_with(
    fixture_repo: Path, smol_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    formats: list[str] = []

    def recorded(model: Any, tokenizer: Any, fmt: Any, samples: Any, **kw: Any) -> float:
        formats.append(fmt.name)
        return 0.0

    monkeypatch.setattr(train_module, "next_line_exact_match", recorded)
    changes = {"holdout": 0.1, "match_samples": 1, "max_steps": 1, "prompt_format": "smollm2-fim"}
    summary = finetuned(fixture_repo, tmp_path / "fim", smol_dir, **changes)
    assert summary["tasks"] == ["completion"]  # one commit: no history to learn from
    assert formats == ["prefix-only", "smollm2-fim"]  # before: bare; after: as served
