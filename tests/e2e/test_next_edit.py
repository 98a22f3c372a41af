"""Next edits through the real server process: `textDocument/copilotInlineEdit` answered
from a scripted engine (`--engine openai:URL`, a tiny model's tokenizer), with the
window's original read from git HEAD, the version echoed, old versions and bad params
refused, the accept command, and a same-line edit offered as an inline completion."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.rawclient import RawClient
from tests.e2e.scripted_engine import ScriptedEngine

COMMITTED = "def area(w, h):\n    return w * h\n\n\nprint(area(2, 3))\n"
OPENED = COMMITTED.replace("area(w, h)", "area(width, h)")
UPDATED = OPENED.replace("return w * h", "return width * h")
ONE_LINE = "x = 1\n"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "app.py").write_text(COMMITTED)
    env = os.environ | {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
    }
    env |= {"GIT_COMMITTER_EMAIL": "t@t"}
    for command in (["init", "-q"], ["add", "app.py"], ["commit", "-qm", "first"]):
        subprocess.run(["git", "-C", str(root), *command], check=True, env=env)
    (root / "app.py").write_text(OPENED)
    return root


@pytest.fixture
def served(
    workspace: Path, tiny_model_dir: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[RawClient, ScriptedEngine]]:
    """A server on the scripted engine; `request.param` adds initializationOptions."""
    with ScriptedEngine() as engine:
        engine.next_edit("current/app.py\ndef area(width, h):", UPDATED)
        engine.next_edit("current/one.py", "x = 2\n")
        env = os.environ | {"CODETAILOR_HOME": str(tmp_path / "home")}
        client = RawClient.spawn(
            "--engine", f"openai:{engine.url}", "--model", str(tiny_model_dir), env=env
        )
        try:
            options = {"context": False} | getattr(request, "param", {})
            result = client.initialize(options, workspace.as_uri())
            assert result["capabilities"]["experimental"]["codetailor"]["nextEdit"] is True
            assert client.wait_ready()["state"] == "ready"
            yield client, engine
        finally:
            client.close()


def ask(client: RawClient, uri: str, version: int | None, line: int, character: int) -> dict:
    document = {"uri": uri} | ({} if version is None else {"version": version})
    params = {"textDocument": document, "position": {"line": line, "character": character}}
    return client.request("textDocument/copilotInlineEdit", params)


def test_a_next_edit_away_from_the_cursor(
    served: tuple[RawClient, ScriptedEngine], workspace: Path
) -> None:
    client, engine = served
    uri = (workspace / "app.py").as_uri()
    client.open(uri, OPENED, version=1)
    change = {"range": {"start": {"line": 4, "character": 0}, "end": {"line": 4, "character": 0}}}
    undo = {"range": {"start": {"line": 4, "character": 0}, "end": {"line": 4, "character": 1}}}
    client.notify(
        "textDocument/didChange",
        {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [change | {"text": "#"}]},
    )
    client.notify(
        "textDocument/didChange",
        {"textDocument": {"uri": uri, "version": 3}, "contentChanges": [undo | {"text": ""}]},
    )
    result = ask(client, uri, 3, 0, 10)
    (edit,) = result["edits"]
    assert edit["text"] == "idth"  # the minimal edit: `w` -> `width` on the line below
    assert edit["range"] == {
        "start": {"line": 1, "character": 12},
        "end": {"line": 1, "character": 12},
    }
    assert edit["textDocument"] == {"uri": uri, "version": 3}
    assert edit["command"]["command"] == "codetailor.acceptedNextEdit"
    prompt = engine.prompts()[-1]
    assert "<|file_sep|>original/app.py\ndef area(w, h):\n" in prompt  # git HEAD's text
    assert "<|file_sep|>current/app.py\ndef area(width, h):\n" in prompt
    assert prompt.endswith("<|file_sep|>updated/app.py")  # the model writes the line break

    client.notify("textDocument/didShowInlineEdit", {"item": edit})
    args = edit["command"]["arguments"]
    client.request(
        "workspace/executeCommand", {"command": "codetailor.acceptedNextEdit", "arguments": args}
    )
    client.notify("codetailor.acceptedNextEdit", {"id": args[0]})  # the same edit again
    assert ask(client, uri, 2, 0, 10) == {"edits": []}  # an old version: nothing
    status = client.status()["nextEdit"]
    assert status["counts"]["shown"] == 1 and status["counts"]["accepted"] == 1
    assert status["counts"]["displayed"] == 1
    assert status["emptyAnswers"]["old_version"] == 1


def test_bad_params_get_an_error_and_the_server_lives_on(
    served: tuple[RawClient, ScriptedEngine], workspace: Path
) -> None:
    client, _ = served
    for params in ({}, {"textDocument": {"uri": 5}, "position": {}}, [1, 2], None):
        reply = client.response(client.request_async("textDocument/copilotInlineEdit", params))
        assert "error" in reply, params
    uri = (workspace / "nothing.py").as_uri()
    assert ask(client, uri, 1, 0, 0) == {"edits": []}  # not open
    assert client.status()["nextEdit"]["emptyAnswers"]["unknown_document"] == 1


def test_a_same_line_edit_at_the_cursor_is_an_inline_completion(
    served: tuple[RawClient, ScriptedEngine], workspace: Path
) -> None:
    client, _ = served
    uri = (workspace / "one.py").as_uri()
    client.open(uri, ONE_LINE)
    (item,) = client.inline(uri, 0, 4)
    assert item["insertText"] == "2"
    assert item["range"] == {
        "start": {"line": 0, "character": 4},
        "end": {"line": 0, "character": 5},
    }
    assert item["command"]["command"] == "codetailor.acceptedNextEdit"


@pytest.mark.parametrize("served", [{"drawsNextEdits": True}], indirect=True)
def test_a_client_that_draws_next_edits_itself_gets_no_inline_next_edit(
    served: tuple[RawClient, ScriptedEngine], workspace: Path
) -> None:
    """Our plugins say `drawsNextEdits`: an empty completion then answers at once, without
    a next-edit prediction behind it (the same request as the test above)."""
    client, _ = served
    uri = (workspace / "one.py").as_uri()
    client.open(uri, ONE_LINE)
    asked = client.status()["nextEdit"]["counts"].get("requests", 0)
    assert client.inline(uri, 0, 4) == []
    assert client.status()["nextEdit"]["counts"].get("requests", 0) == asked
