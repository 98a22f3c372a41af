"""The pure rules of the history miner: patches, patch ids, commit filters, orders, examples."""

from __future__ import annotations

from lsp_server.repo.commits import BULK_LINES, skip_reasons, temporal_split
from lsp_server.repo.diffs import (
    Commit,
    FileChange,
    Hunk,
    apply_hunks,
    current_line,
    parse_log,
    parse_patch,
    patch_id,
)
from lsp_server.repo.edit_examples import (
    NO_EDIT_SHARE,
    WINDOW_LINES,
    change_keys,
    commit_examples,
    dedupe,
    leaks,
    mix_no_edit,
    reverts,
)
from lsp_server.repo.hunk_order import order_file, order_nearest

PATCH = """
diff --git a/src/app.py b/src/app.py
index 1111111..2222222 100644
--- a/src/app.py
+++ b/src/app.py
@@ -3 +3 @@ def f():
-    return 1
+    return 2
@@ -10,0 +11,2 @@ def g():
+    x = 1
+    y = 2
@@ -20,2 +21,0 @@ def h():
-    dead()
-    code()
diff --git a/old name.py b/new name.py
similarity index 100%
rename from old name.py
rename to new name.py
diff --git a/added.py b/added.py
new file mode 100644
index 0000000..3333333
--- /dev/null
+++ b/added.py
@@ -0,0 +1 @@
+print("hi")
\\ No newline at end of file
diff --git a/logo.png b/logo.png
index 4444444..5555555 100644
Binary files a/logo.png and b/logo.png differ
"""


def test_a_patch_parses_into_files_and_hunks():
    app, renamed, added, logo = parse_patch(PATCH)
    assert (app.old_path, app.new_path) == ("src/app.py", "src/app.py")
    assert app.hunks == (
        Hunk("src/app.py", 2, ("    return 1",), ("    return 2",)),
        Hunk("src/app.py", 10, (), ("    x = 1", "    y = 2")),
        Hunk("src/app.py", 19, ("    dead()", "    code()"), ()),
    )
    assert renamed.renamed and not renamed.hunks
    assert (renamed.old_path, renamed.new_path) == ("old name.py", "new name.py")
    assert added.old_path is None and added.hunks[0].new == ('print("hi")',)
    assert logo.binary


def test_a_log_parses_into_commits_with_their_metadata():
    fields = [
        ("abc", "p1 p2", "Ann", "ann@x.org", "1700000000", "Fix it", "Body line\n"),
        ("def", "", "Bob", "bob@x.org", "1700000001", "First", ""),
    ]
    records = ["\x00\x00commit\x00" + "\x00".join(f) + "\x00\n" for f in fields]
    log = records[0] + PATCH + records[1]
    first, second = parse_log(log)
    assert (first.sha, first.parent, first.author_email, first.time) == (
        "abc",
        "p1",
        "ann@x.org",
        1700000000,
    )
    assert first.body == "Body line" and len(first.hunks) == 4
    assert second.parent is None and second.files == ()


def _commit(sha: str, *hunks: Hunk, subject: str = "change", author: str = "Ann") -> Commit:
    paths = list(dict.fromkeys(h.path for h in hunks))
    files = tuple(FileChange(p, p, tuple(h for h in hunks if h.path == p)) for p in paths)
    return Commit(sha, "parent", author, f"{author.lower()}@x.org", 0, subject, "", files)


def test_a_patch_id_ignores_whitespace_line_numbers_and_file_order():
    a = _commit("a", Hunk("x.py", 3, ("a = 1",), ("a = 2",)), Hunk("y.py", 1, (), ("b",)))
    moved = _commit("b", Hunk("y.py", 9, (), ("b",)), Hunk("x.py", 40, ("a  =  1",), ("a =2",)))
    other = _commit("c", Hunk("x.py", 3, ("a = 1",), ("a = 3",)))
    undo = _commit("d", Hunk("x.py", 3, ("a = 2",), ("a = 1",)), Hunk("y.py", 1, ("b",), ()))
    assert patch_id(a.files) == patch_id(moved.files)
    assert patch_id(a.files) != patch_id(other.files)
    assert patch_id(undo.files, reverse=True) == patch_id(a.files)


def test_commits_are_dropped_for_the_reason_they_are_noise():
    edit = Hunk("app.py", 3, ("a = 1",), ("a = 2",))
    history = [
        _commit("keep", edit),
        _commit("bot", Hunk("app.py", 5, ("x",), ("y",)), author="dependabot[bot]"),
        _commit("undo", Hunk("app.py", 3, ("a = 2",), ("a = 1",))),  # a revert without saying so
        _commit("again", edit),  # the first change once more: a cherry-pick
        _commit("said", Hunk("app.py", 7, ("p",), ("q",)), subject='Revert "Add q"'),
        _commit("spaces", Hunk("app.py", 1, ("if x:",), ("if  x :",))),
        _commit("lock", Hunk("poetry.lock", 1, ("a",), ("b",))),
        _commit("bulk", Hunk("app.py", 1, (), tuple(f"l{i}" for i in range(BULK_LINES + 1)))),
        Commit("mv", "parent", "Ann", "a@x.org", 0, "move", "", (FileChange("a.py", "b.py"),)),
    ]
    assert skip_reasons(history) == [
        None,
        "bot",
        "revert",
        "cherry_pick",
        "revert",
        "formatting_only",
        "no_source",
        "bulk",
        "rename_only",
    ]


def test_the_temporal_split_holds_out_the_newest_commits():
    commits = [_commit(str(i), Hunk("a.py", i, (), ("x",))) for i in range(25)]
    earlier, held = temporal_split(commits, 0.1)
    assert [c.sha for c in held] == ["22", "23", "24"]  # ceil(2.5)
    assert earlier == commits[:22]
    assert temporal_split(commits[:2], 0.1) == (commits[:1], commits[1:2])
    assert temporal_split(commits, 0.0) == (commits, [])


def test_hunks_apply_in_any_order():
    lines = [f"l{i}" for i in range(10)]
    top = Hunk("a.py", 1, ("l1",), ("A", "B"))  # one line becomes two
    low = Hunk("a.py", 6, ("l6", "l7"), ())  # two lines go
    assert apply_hunks(lines, [], low) == 6
    assert apply_hunks(lines, [low], top) == 1
    assert lines == ["l0", "A", "B", "l2", "l3", "l4", "l5", "l8", "l9"]
    assert current_line([top, low], 8) == 7
    assert apply_hunks(lines, [top, low], Hunk("a.py", 4, ("nope",), ())) is None


def test_file_order_goes_top_to_bottom_and_nearest_starts_at_the_largest_hunk():
    h1, h2, h3 = (Hunk("a.py", n, ("x",) * size, ("y",)) for n, size in ((5, 1), (30, 3), (40, 1)))
    other = Hunk("b.py", 31, ("x",), ())
    assert order_file([h3, other, h1, h2]) == [h1, h2, h3, other]
    assert order_nearest([h1, h2, h3, other]) == [h2, h3, h1, other]


def _text(n: int) -> str:
    return "".join(f"line {i}\n" for i in range(n))


def test_an_example_is_the_file_with_earlier_hunks_applied_and_the_next_as_target():
    first = Hunk("a.py", 10, ("line 10",), ("line ten",))
    second = Hunk("a.py", 14, ("line 14",), ("line fourteen",))
    commit = _commit("c1", first, second)
    examples, quiet = commit_examples(commit, {"a.py": _text(40)}, order="file")
    (example,) = examples
    window = example.request.window
    assert example.category == "below"
    assert [(e.before, e.after) for e in example.request.history] == [("line 10", "line ten")]
    radius = WINDOW_LINES // 2
    assert window.start_line == 10 - radius
    assert window.current.splitlines()[radius] == "line ten"
    assert window.original.splitlines()[radius] == "line 10"
    assert window.current[: window.cursor].endswith("line ten")  # the cursor after the edit
    assert example.expected == window.current.replace("line 14\n", "line fourteen\n")
    # After the last hunk nothing is due in its window.
    assert [q.category for q in quiet] == ["none"]
    assert quiet[0].expected == quiet[0].request.window.current
    assert "line fourteen" in quiet[0].request.window.current


def test_the_cursor_is_at_the_target_when_the_last_edit_is_elsewhere():
    first = Hunk("a.py", 2, ("line 2",), ("line two",))
    far = Hunk("a.py", 30, ("line 30",), ("line thirty",))
    upper = Hunk("a.py", 5, ("line 5", "line 6"), ("line five",))  # the largest: first
    examples, _ = commit_examples(_commit("c", first, far), {"a.py": _text(40)}, order="file")
    assert [e.category for e in examples] == ["at"]
    assert (
        examples[0]
        .request.window.current[examples[0].request.window.cursor :]
        .startswith("line 30")
    )
    examples, _ = commit_examples(_commit("c", upper, first), {"a.py": _text(40)}, order="nearest")
    assert [e.category for e in examples] == ["above"]


def test_targets_that_undo_an_earlier_hunk_or_only_touch_whitespace_are_not_asked():
    do = Hunk("a.py", 3, ("line 3",), ("line three",))
    undo_elsewhere = Hunk("a.py", 6, ("line three",), ("line 3",))
    spaces = Hunk("a.py", 8, ("line 8",), ("line   8",))
    assert reverts(undo_elsewhere, do)
    examples, _ = commit_examples(
        _commit("c", do, undo_elsewhere, spaces), {"a.py": _text(20)}, order="file"
    )
    assert examples == []


def test_held_out_targets_must_not_repeat_an_earlier_change():
    target = Hunk("a.py", 14, ("line 14",), ("line fourteen",))
    examples, _ = commit_examples(
        _commit("c", Hunk("a.py", 10, ("line 10",), ("x",)), target), {"a.py": _text(30)}
    )
    assert leaks(examples[0], change_keys([Hunk("b.py", 1, ("old",), ("line  fourteen",))]))
    assert not leaks(examples[0], change_keys([Hunk("b.py", 1, ("line 14",), ("other",))]))


def test_no_edit_windows_make_up_their_share_and_repeats_go():
    due = [
        commit_examples(
            _commit(str(i), Hunk("a.py", 2, ("line 2",), (f"v{i}",)), Hunk("a.py", 5, (), ("n",))),
            {"a.py": _text(12)},
        )
        for i in range(20)
    ]
    edit_due = [e for found, _ in due for e in found]
    quiet = [q for _, found in due for q in found]
    mixed = mix_no_edit(edit_due, quiet)
    share = sum(not e.edit_due for e in mixed) / len(mixed)
    assert abs(share - NO_EDIT_SHARE) < 0.05
    assert dedupe(edit_due + edit_due) == edit_due


def test_the_window_has_the_size_the_server_uses():
    first = Hunk("a.py", 10, ("line 10",), ("line ten",))
    second = Hunk("a.py", 13, ("line 13",), ("line thirteen",))
    (example,), _ = commit_examples(
        _commit("c", first, second), {"a.py": _text(40)}, order="file", window_lines=11
    )
    assert example.request.window.start_line == 5
    assert len(example.request.window.current.splitlines()) == 11
    assert example.category == "below"


def test_the_original_window_is_the_same_lines_before_the_commit_even_in_a_large_change():
    # Changes at both ends of a long file: a line diff of the whole file would take all of it.
    top = Hunk("a.py", 0, tuple(f"line {i}" for i in range(2500)), ("head",))
    bottom = Hunk("a.py", 4990, ("line 4990",), ("tail",))
    below = Hunk("a.py", 4994, ("line 4994",), ("end",))
    examples, _ = commit_examples(
        _commit("c", top, bottom, below), {"a.py": _text(5000)}, order="file", window_lines=11
    )
    assert [e.category for e in examples] == ["at", "below"]
    window = examples[-1].request.window
    assert window.original.splitlines() == [f"line {i}" for i in range(4985, 4996)]
    assert window.current.splitlines()[5] == "tail"
