"""What the typing replay's requests waited for (measure/tail.py): pure, no server."""

from __future__ import annotations

from lsp_server.measure.tail import RequestFacts, cause_of, tail_report


def status(request: int | None, empty: dict[str, int] | None = None, **generation) -> dict:
    last = {"request": request, **generation} if request is not None else None
    return {"lastGeneration": last, "emptyAnswers": empty or {}}


def run(**parts) -> RequestFacts:
    facts = {"complete_ms": 100.0, "prefill_ms": 10.0, "decode_ms": 80.0} | parts
    return RequestFacts(
        elapsed_ms=facts.pop("elapsed_ms", 110.0),
        first_in_document=facts.pop("first", False),
        ran_model=True,
        **facts,
    )


def test_facts_come_from_the_statuses_around_the_request() -> None:
    before = status(3, {"no_help": 1, "time_budget": 0})
    after = status(
        4,
        {"no_help": 1, "time_budget": 1},
        complete_ms=900.0,
        prefill_ms=700.0,
        decode_ms=150.0,
        prompt_tokens=800,
        cached_tokens=100,
        generated_tokens=2,
        stop_reason="time",
    )
    facts = RequestFacts.from_status(950.0, False, before, after)
    assert facts.ran_model and facts.uncached_tokens == 700
    assert facts.empty_reason == "time_budget" and facts.stop_reason == "time"
    # The same last generation after the request: it did not run the model.
    quiet = RequestFacts.from_status(5.0, False, after, after | {"emptyAnswers": {"no_help": 2}})
    assert not quiet.ran_model and quiet.empty_reason == "no_help"
    # A server's first generation: no generation before it.
    assert RequestFacts.from_status(5.0, True, status(None), after).ran_model


def test_what_a_quiet_answer_hid_is_judged_against_the_file() -> None:
    before = status(3, {"quiet": 1})
    hid = status(4, {"quiet": 2}, text="return total", decode_ms=50.0)
    right = RequestFacts.from_status(60.0, False, before, hid, "return total\n")
    wrong = RequestFacts.from_status(60.0, False, before, hid, "yield count\n")
    assert right.quiet_taken is True and wrong.quiet_taken is False
    # Not judged: no file text given, or an answer that was not quiet.
    assert RequestFacts.from_status(60.0, False, before, hid).quiet_taken is None
    shown = status(4, {"quiet": 1}, text="return total")
    assert RequestFacts.from_status(60.0, False, before, shown, "return total").quiet_taken is None
    report = tail_report([right, wrong, wrong, RequestFacts(3.0, False)], 16)
    assert report["quiet_hid"] == {"would_be_taken": 1, "would_not": 2}
    assert "quiet_hid" not in tail_report([RequestFacts(3.0, False)], 16)


def test_the_cause_is_the_part_that_took_longest() -> None:
    assert cause_of(RequestFacts(3.0, False), 16) == "typing_through"
    assert cause_of(run(elapsed_ms=1000.0), 16) == "waited"
    assert cause_of(run(prefill_ms=90.0, decode_ms=5.0, first=True), 16) == "first_prefill"
    moved = run(prefill_ms=90.0, decode_ms=5.0, uncached_tokens=300)
    assert cause_of(moved, 16) == "window_moved"
    # A re-prefill is named even where decoding took a little longer.
    assert cause_of(run(prefill_ms=40.0, decode_ms=50.0, uncached_tokens=680), 16) == "window_moved"
    assert cause_of(run(prefill_ms=90.0, decode_ms=5.0, uncached_tokens=4), 16) == "prefill"
    assert cause_of(run(generated_tokens=16), 16) == "max_tokens"
    assert cause_of(run(generated_tokens=3), 16) == "decode"
    assert cause_of(run(prefill_ms=1.0, decode_ms=2.0), 16) == "prompt"


def test_the_report_names_the_slow_tenth_slowest_first() -> None:
    fast = [RequestFacts(10.0 + n, False) for n in range(18)]
    slow = [
        run(elapsed_ms=5000.0),
        run(
            elapsed_ms=900.0,
            complete_ms=890.0,
            prefill_ms=880.0,
            uncached_tokens=500,
            empty_reason="time_budget",
        ),
    ]
    report = tail_report(fast + slow, 16)
    assert report["slow_tenth_causes"] == {"waited": 1, "window_moved": 1}
    assert [r["elapsed_ms"] for r in report["slow_tenth"]] == [5000.0, 900.0]
    assert report["causes"]["typing_through"] == 18
    assert report["empty_answers"] == {"time_budget": 1}
    assert tail_report([], 16) == {}
