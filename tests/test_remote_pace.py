"""The remote engine's prefill pace and the prompt window it allows, on a clock the test keeps:
each sample is (prompt tokens, seconds to the first token) as the engine measured them."""

from __future__ import annotations

from lsp_server.model.remote_pace import FLOOR_TOKENS, START_TOKENS, PrefillPace


def test_nothing_known_the_first_window_is_modest_and_no_bound_is_the_ceiling():
    pace = PrefillPace(ceiling=4096)
    assert pace.window_for(8.0) == START_TOKENS
    assert pace.window_for(None) == 4096
    assert pace.tokens_per_second() is None
    assert PrefillPace(ceiling=400).window_for(8.0) == 400  # never more than the ceiling


def test_a_short_prompt_teaches_nothing():
    pace = PrefillPace(ceiling=4096)
    pace.observed(5, 9.0)  # the server's warm-up: it loaded the model first
    pace.timed_out(10, 8.0)
    assert pace.fit() is None and pace.window_for(8.0) == START_TOKENS


def test_a_fast_engine_gets_the_whole_window_at_once():
    pace = PrefillPace(ceiling=4096)
    pace.observed(1024, 0.1)  # 10,000 tokens/s
    assert pace.window_for(8.0) == 4096


def test_a_slow_engine_gets_the_window_its_prefill_fits_in_the_bound():
    pace = PrefillPace(ceiling=4096)
    pace.observed(1000, 4.0)  # 250 tokens/s: 8 s * 0.7 fits 1,400 tokens
    assert pace.window_for(8.0) == 1024
    assert pace.window_for(3.0) == 512  # a tighter bound: 525 tokens
    assert pace.window_for(0.5) == FLOOR_TOKENS  # never below the floor


def test_a_first_token_timeout_halves_the_window_until_one_fits():
    pace = PrefillPace(ceiling=4096, window=1024)
    assert pace.window_for(5.0) == 1024
    pace.timed_out(1024, 5.0)
    assert pace.window_for(5.0) == 512
    pace.timed_out(512, 5.0)
    assert pace.window_for(5.0) == 256


def test_a_fixed_cost_per_request_is_told_apart_from_the_cost_per_token():
    pace = PrefillPace(ceiling=4096)
    for tokens in (256, 512, 1024, 512):  # 2 s of overhead plus 400 tokens/s
        pace.observed(tokens, 2.0 + tokens / 400)
    overhead, per_token = pace.fit() or (0.0, 0.0)
    assert round(overhead, 3) == 2.0 and round(1 / per_token) == 400
    # 8 s * 0.7 - 2 s leaves 3.6 s: 1,440 tokens (the ratio alone would say ~700).
    assert pace.window_for(8.0) == 1024
    assert pace.window_for(2.5) == FLOOR_TOKENS  # the overhead alone eats the bound


def test_the_window_stays_put_while_the_pace_wobbles_and_grows_only_with_room():
    pace = PrefillPace(ceiling=4096)
    pace.observed(1024, 4.0)  # 256 tokens/s: 8 s fits 1,433
    assert pace.window_for(8.0) == 1024
    chosen = set()
    for seconds in (3.6, 4.4, 3.8, 4.2, 3.5):  # a busier and a quieter moment
        pace.observed(1024, seconds)
        chosen.add(pace.window_for(8.0))
    assert chosen == {1024}  # the prompt's head stays where it was: the engine's cache hits
    for _ in range(8):
        pace.observed(1024, 1.0)  # the engine got four times faster
    assert pace.window_for(8.0) == 4096
