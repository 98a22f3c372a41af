"""One line or a block: the decision from the cursor's context, per language."""

from __future__ import annotations

import pytest

from lsp_server.completion.languages import language_for
from lsp_server.completion.scope import decide_scope
from lsp_server.completion.syntax import cursor_syntax, parser_for

# (name, path, prefix, suffix, multiline, reason)
CASES = [
    ("python body after def", "a.py", "def f(x):\n    ", "\n", True, "block opener"),
    ("python mid-line call", "a.py", "x = foo(", ")\n", False, "end of line"),
    ("python mid-line text after", "a.py", "x = foo(", "a, b)\n", False, "mid-line"),
    ("python end of statement", "a.py", "    return x", "\n", False, "end of line"),
    ("python end of def line", "a.py", "def f(x):", "\n", True, "after block opener"),
    ("python dict key line is no block", "a.py", "d = {'a': f(", "\n", False, "end of line"),
    ("rust end of fn line", "a.rs", "fn main() {", "\n", True, "after block opener"),
    ("python comment line", "a.py", "# the parser is: ", "\n", False, "in comment"),
    ("python colon in comment above", "a.py", "x = 1  # note:\n", "\n", False, "no block opener"),
    ("python string", "a.py", 's = "abc', '"\n', False, "in string"),
    ("python docstring", "a.py", 'def f():\n    """Does\n    ', '\n    """\n', False, "in string"),
    ("typescript braces", "a.ts", "function f() {", "}\n", True, "inside brackets"),
    ("typescript template", "a.ts", "const s = `hi ${", "}`;\n", False, "in string"),
    ("typescript arrow body", "a.ts", "const f = () => {\n  ", "\n};\n", True, "block opener"),
    ("go block", "a.go", "if err != nil {\n\t", "\n}\n", True, "block opener"),
    ("go line comment", "a.go", "// Package x does", "\n", False, "in comment"),
    ("rust block comment", "a.rs", "/* first\n * then", "\n */\n", False, "in comment"),
    ("rust lifetime is no string", "a.rs", "fn f<'a>(x: &'a str) {\n    ", "\n}\n", True, ""),
    ("json value", "a.json", '{"name": ', "}\n", False, "end of line"),
    ("json string", "a.json", '{"name": "co', '"}\n', False, "in string"),
    ("unknown language", "notes.txt", "if x:\n    ", "\n", True, "block opener"),
]


@pytest.mark.parametrize(
    ("path", "prefix", "suffix", "multiline", "reason"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_scope(path: str, prefix: str, suffix: str, multiline: bool, reason: str) -> None:
    scope = decide_scope(prefix, suffix, language=language_for(path))
    assert scope.multiline is multiline
    assert scope.reason.startswith(reason)


def test_forced_modes() -> None:
    assert not decide_scope("def f():\n    ", "\n", "line").multiline
    assert decide_scope("x = 1", "\n", "block").multiline


def test_block_indent_is_the_openers() -> None:
    scope = decide_scope(
        "class A:\n    def f(self):\n        ", "\n", language=language_for("a.py")
    )
    assert scope.block_indent == 4
    assert scope.finish("x = 1\n        y = 2\n    def g(self):\n") == "x = 1\n        y = 2"


def test_tree_sitter_is_used_where_installed() -> None:
    if parser_for("python") is None:
        pytest.skip("tree-sitter-language-pack is not installed")
    syntax = cursor_syntax('x = """a\nb', '\n"""\n', language_for("a.py"))
    assert syntax.source == "tree-sitter" and syntax.in_string


def test_textual_fallback_without_a_grammar() -> None:
    """A language with no grammar: the line scan still finds strings and comments."""
    lang = language_for("notes.txt")
    assert cursor_syntax("say # hi", "\n", lang).in_comment
    assert cursor_syntax('x = "a', "\n", lang).in_string
    assert not cursor_syntax('x = "a" + ', "\n", lang).in_string


def test_language_from_lsp_language_id() -> None:
    assert language_for(None, "typescriptreact").name == "tsx"
    assert language_for("untitled-1", "python").line_comment == "#"
    assert language_for("a.rs", "python").name == "rust"  # the extension wins
    assert language_for(None, "cobol").name == "text"
