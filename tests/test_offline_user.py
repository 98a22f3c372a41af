"""The simulated user offline: the places it may ask at, its takes there, and the paired
comparison of two adapters at the same places."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lsp_server.measure.client import EditorClient
from lsp_server.measure.offline_user import Place, paired, sign_test, takes, typing_places
from lsp_server.measure.simulated_user import Simulation, UserSetup, type_file
from tests.fixtures.clients import FakeClient

SOURCE = "".join(f"def f{n}(x):\n    return compute_value(x, scale={n})\n" for n in range(30))


class Recorder(FakeClient):
    """A FakeClient that notes the document and cursor of every request; its suggestion is
    wrong at every `wrong_every`-th request (1: always)."""

    def __init__(self, source: str, wrong_every: int) -> None:
        super().__init__(source)
        self.wrong_every = wrong_every
        self.asked_at: list[tuple[str, int]] = []

    async def text_document_inline_completion_async(self, params: Any) -> Any:
        from lsp_server.session.documents import offset_at

        at = offset_at(self.text, params.position.line, params.position.character)
        self.asked_at.append((self.text, at))
        if self.wrong_every == 1:
            self.asked = 1  # FakeClient is right at odd requests: make every one even
        return await super().text_document_inline_completion_async(params)


def test_the_places_are_where_the_simulated_user_asks_whatever_it_took() -> None:
    setup = UserSetup(words_per_file=25, max_suggestions=1000, start=0.3)
    places = typing_places([("pkg/calc.py", SOURCE)], setup)
    assert len(places) == 25  # at the start of the typed part, then after each word
    # A user who takes nothing asks at exactly these places, in this order.
    refuser = Recorder(SOURCE, wrong_every=1)
    asyncio.run(type_file(EditorClient(refuser), "pkg/calc.py", SOURCE, Simulation(), setup, 0))
    assert refuser.asked_at == [(p.text, p.offset) for p in places]
    # One who takes every other suggestion skips places, and asks at others after a take
    # (which ends on a word, before its space); where it asks at a place, the document is
    # the same as the place's.
    taker = Recorder(SOURCE, wrong_every=2)
    asyncio.run(type_file(EditorClient(taker), "pkg/calc.py", SOURCE, Simulation(), setup, 0))
    by_offset = {p.offset: p.text for p in places}
    common = [(text, at) for text, at in taker.asked_at if at in by_offset]
    assert 0 < len(common) < len(places)
    assert all(by_offset[at] == text for text, at in common)
    # What the file says from a place is the rest of the typed part.
    first, last = places[0], places[-1]
    assert first.text[first.offset] == "\n" and SOURCE.startswith(first.truth, first.offset)
    assert SOURCE[last.offset :].startswith(last.truth) and last.truth.endswith("\n")


def test_takes_apply_the_simulated_users_rule() -> None:
    places = [Place("a.py", "", 0, "return a + b\n"), Place("a.py", "", 0, "x = 1\n")]
    answers = {"return a + b\n": "return a - b", "x = 1\n": "x = 2"}
    assert takes(places, lambda p: answers[p.truth], min_chars=4) == ["return a", ""]


def test_paired_counts_the_places_only_one_side_got_accepted() -> None:
    before = ["ab", "", "cd", "", ""]
    after = ["ab", "ef", "", "gh", ""]
    assert paired(before, after) == {
        "places": 5,
        "both": 1,
        "only_before": 1,
        "only_after": 2,
        "sign_test_p": 1.0,
    }
    with pytest.raises(ValueError):
        paired(["a"], [])


def test_the_sign_test_is_exact_and_two_sided() -> None:
    assert sign_test(0, 0) == 1.0
    assert sign_test(5, 0) == pytest.approx(2 / 32)
    assert sign_test(0, 5) == sign_test(5, 0)
    assert sign_test(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 4096)


def test_the_same_model_against_itself_differs_at_no_place(tiny_model_dir: Any) -> None:
    from lsp_server.measure.offline_user import run_offline

    setup = UserSetup(words_per_file=12, start=0.3, min_chars=1, dtype="float32")
    report = run_offline(
        [("pkg/calc.py", SOURCE)],
        model=str(tiny_model_dir),
        adapter=None,
        against="base",
        setup=setup,
        max_tokens=4,
        keep_takes=True,
    )
    # 12 words, then the rest of the last one's line.
    assert report["adapter"]["places"] == report["against"]["places"] > 12
    assert report["adapter"]["accepted"] == report["against"]["accepted"]
    paired_report = report["paired"]
    assert paired_report["only_before"] == paired_report["only_after"] == 0
    assert paired_report["sign_test_p"] == 1.0
    # The takes, kept, pair up again as the run paired them.
    assert len(report["places"]) == report["adapter"]["places"]
    assert paired(report["against"]["taken"], report["adapter"]["taken"]) == paired_report


@pytest.mark.parametrize("flag", [["--against", "base"], ["--takes"]])
def test_paired_flags_without_offline_are_one_clear_error(
    flag: list[str], tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from lsp_server.cli import main

    assert main(["bench", "simulate", str(tmp_path), *flag]) == 2
    assert "add --offline" in capsys.readouterr().err


def test_start_sets_where_in_each_file_the_user_types(
    tiny_model_dir: Any, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from lsp_server.cli import main

    (tmp_path / "calc.py").write_text(SOURCE)
    args = ["bench", "simulate", str(tmp_path), "--split", "train", "--offline", "--json"]
    args += ["--takes", "--model", str(tiny_model_dir), "--words", "3", "--max-tokens", "2"]
    firsts = []
    for start in ("0", "0.8"):
        assert main([*args, "--start", start]) == 0
        firsts.append(json.loads(capsys.readouterr().out)["places"][0][1])
    # From the line after the one the fraction falls on.
    assert firsts == [SOURCE.index("\n") + 1, SOURCE.index("\n", int(len(SOURCE) * 0.8)) + 1]
    assert main([*args, "--start", "1"]) == 2
    assert "--start 1.0: give a fraction of the file, 0 up to 1" in capsys.readouterr().err
