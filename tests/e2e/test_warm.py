"""Work done before it is asked for, through a real server process on a tiny model.

Opening a document warms the KV cache at its window, so the first request
there continues a cached prefix; a shown suggestion's continuation is computed
ahead and served when the user accepts it and asks again. The policy is
unit-tested in tests/test_session.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import spawn
from tests.e2e.rawclient import RawClient

TEXT = "".join(f"def function_{i}(value):\n    return value * {i}\n\n" for i in range(12))


@pytest.fixture(scope="module")
def server(endless_model_dir: Path):
    client = spawn(endless_model_dir, options={"maxTokens": 4, "multiline": "never"})
    yield client
    client.close()


def test_the_first_request_after_opening_finds_the_window_warm(server: RawClient):
    uri = "file:///work/warm_open.py"
    before = server.status()["ahead"]["warmsDone"]
    server.open(uri, TEXT)
    server.wait_status(lambda s: s["ahead"]["warmsDone"] > before, "the open was not warmed")
    line = TEXT.count("\n") - 4  # in the middle of the last function
    items = server.inline(uri, line, len("    return value * 10"))
    assert items and items[0]["insertText"] == "aaaa"
    last = server.status()["lastGeneration"]
    assert last["cached_tokens"] > 0.9 * last["prompt_tokens"]


def test_an_accepted_suggestion_is_followed_by_one_computed_ahead(server: RawClient):
    uri = "file:///work/warm_next.py"
    server.open(uri, "x = ")
    assert server.inline(uri, 0, 4)[0]["insertText"] == "aaaa"
    server.wait_status(lambda s: s["ahead"]["nextComputed"] >= 1, "nothing computed ahead")
    hits = server.status()["ahead"]["nextHits"]
    server.notify(
        "textDocument/didChange",
        {
            "textDocument": {"uri": uri, "version": 2},
            "contentChanges": [
                {
                    "range": {
                        "start": {"line": 0, "character": 4},
                        "end": {"line": 0, "character": 4},
                    },
                    "text": "aaaa",
                }
            ],
        },
    )
    # The cursor stands in the word "aaaa": the item replaces that word with itself
    # plus the next suggestion (its range starts at the word).
    (item,) = server.inline(uri, 0, 8)
    assert item["insertText"] == "aaaa" + "aaaa"
    assert item["range"]["start"] == {"line": 0, "character": 4}
    assert server.status()["ahead"]["nextHits"] == hits + 1


def test_a_cursor_notification_warms_the_window_where_the_cursor_went(server: RawClient):
    uri = "file:///work/warm_cursor.py"
    server.open(uri, TEXT)
    done = server.wait_status(lambda s: s["ahead"]["warmsDone"] >= 1, "no warm")["ahead"]
    position = {"line": 2, "character": 4}
    server.notify("codetailor/cursor", {"textDocument": {"uri": uri}, "position": position})
    server.wait_status(
        lambda s: s["ahead"]["warmsDone"] > done["warmsDone"], "the cursor's window not warmed"
    )
    server.notify("codetailor/cursor", {"position": "nonsense"})  # ignored
    assert server.inline(uri, 1, len("    return value * 0"))  # still answering
