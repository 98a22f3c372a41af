"""Post-processing rules, one table per rule, with cases from real code; plus properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lsp_server.completion.languages import language_for
from lsp_server.completion.postprocess import (
    RULES,
    balance_brackets,
    cut_repetition,
    indent_style,
    match_indentation,
    postprocess,
    remove_suffix_overlap,
    trim_whitespace,
)
from lsp_server.completion.scope import decide_scope


def run(path: str, prefix: str, suffix: str, raw: str, rules: tuple[str, ...] = RULES) -> str:
    scope = decide_scope(prefix, suffix, language=language_for(path))
    return postprocess(raw, prefix, suffix, scope, rules=rules)


# (name, path, prefix, suffix, raw model output, expected)
SCOPE = [
    (
        "python block stops at dedent",
        "a.py",
        "def area(r):\n    ",
        "\n\n\ndef main():\n    pass\n",
        "return 3.14 * r * r\n\n\ndef perimeter(r):\n    return 2 * r\n",
        "return 3.14 * r * r",
    ),
    (
        "go block stops at the closing brace",
        "a.go",
        "func f() error {\n\tif err != nil {\n\t\t",
        "\n\t}\n\treturn nil\n}\n",
        "return err\n\t}\n\treturn nil\n",
        "return err",
    ),
    (
        "typescript body between braces",
        "a.ts",
        "function add(a: number, b: number) {",
        "}\n",
        "\n  return a + b;\n}\n\nfunction sub(",
        "\n  return a + b;",
    ),
    (
        "comment line stays one line",
        "a.py",
        "# Compute the ",
        "\ndef f():\n",
        "area of a circle.\ndef f():\n",
        "area of a circle.",
    ),
]

BRACKETS = [
    ("python call closed by the editor", "a.py", "print(len(", "))\n", "items))", "items"),
    ("python inner call kept", "a.py", "print(", ")\n", "sorted(xs))", "sorted(xs)"),
    ("python string quote", "a.py", 'name = "wor', '"\n', 'ld"', "ld"),
    ("typescript call with semicolon", "a.ts", "console.log(", ");\n", "msg);", "msg"),
    ("typescript object", "a.ts", "const p = { x: 1, ", "};\n", "y: 2 };", "y: 2"),
    ("go slice literal", "a.go", "xs := []int{1, 2, ", "}\n", "3}", "3"),
    ("rust macro", "a.rs", 'println!("{}", ', ");\n", "x);", "x"),
    ("rust vec", "a.rs", "let v = vec![", "];\n", "1, 2, 3];", "1, 2, 3"),
    ("json string value", "a.json", '{"name": "code', '"}\n', 'tailor"}', "tailor"),
    ("nothing after the cursor", "a.py", "print(", "\n", "x)", "x)"),
]

OVERLAP = [
    ("python rest of line retyped", "a.py", "foo(", ", y)\n", "x, y)", "x"),
    (
        "python rest of line retyped with changes",
        "a.py",
        'return self.request("PUT", ',
        "url, data=data, **kwargs)\n",
        "url, data=data, json=json, **kwargs)",
        "",
    ),
    (
        "python next lines retyped",
        "a.py",
        "def f(x):\n    ",
        "\n    return y\n",
        "y = x + 1\n    return y\n",
        "y = x + 1",
    ),
    (
        "typescript next statement retyped",
        "a.ts",
        "function f() {\n  ",
        "\n  return total;\n}\n",
        "const total = sum(xs);\n  return total;\n",
        "const total = sum(xs);",
    ),
    (
        "python blank line: first line retypes the next",
        "a.py",
        "def f(x):\n    ",
        "\n    y = x + 1\n    return y\n",
        "y = x + 1\n    print(y)\n",
        "",
    ),
    ("completion the suffix already holds", "a.py", "x = ", "compute()\n", "compute()", ""),
    ("one brace matching is coincidence", "a.go", "if x {\n\t", "\n}\n", "y()\n}", "y()"),
]

REPETITION = [
    (
        "python repeated line",
        "a.py",
        "def f():\n    ",
        "\n",
        "x = load()\n    x = load()\n    x = load()\n",
        "x = load()",
    ),
    ("python echo of the line above", "a.py", "import os\n", "\n", "import os", ""),
    ("loop within a line", "a.py", "names = [", "]\n", "'a', 'a', 'a', 'a', 'a', 'a'", "'a',"),
    ("closing braces may repeat", "a.rs", "fn f() {\n    if x {\n        ", "\n", "y();", "y();"),
]

INDENTATION = [
    ("go tabs from spaces", "a.go", "func f() {\n\tx := 1\n", "\n}\n", "    y := 2", "\ty := 2"),
    (
        "python spaces from tabs",
        "a.py",
        "def f():\n    if x:\n        ",
        "\n",
        "y = 1\n\t\tz = 2",
        "y = 1\n        z = 2",
    ),
]

WHITESPACE = [
    ("whitespace only", "a.py", "x = 1\n", "\n", "   \n\t\n", ""),
    ("trailing spaces", "a.py", "x = ", "\n", "1   ", "1"),
    ("trailing blank lines", "a.py", "def f():\n    ", "\n", "pass\n\n\n", "pass"),
]

ALL = SCOPE + BRACKETS + OVERLAP + REPETITION + INDENTATION + WHITESPACE


@pytest.mark.parametrize(
    ("path", "prefix", "suffix", "raw", "expected"),
    [c[1:] for c in ALL],
    ids=[c[0] for c in ALL],
)
def test_rule(path: str, prefix: str, suffix: str, raw: str, expected: str) -> None:
    assert run(path, prefix, suffix, raw) == expected


@pytest.mark.parametrize(("path", "prefix", "suffix", "raw", "_"), [c[1:] for c in BRACKETS[:4]])
def test_brackets_rule_is_what_fixes_them(path, prefix, suffix, raw, _) -> None:
    """With the rule off, the completion would duplicate the closer after the cursor."""
    off = run(path, prefix, suffix, raw, tuple(r for r in RULES if r != "brackets"))
    assert off == raw


def test_units() -> None:
    assert trim_whitespace("a  \n\n") == "a"
    assert balance_brackets("f(x))", "g(", ")") == "f(x)"
    assert remove_suffix_overlap("a\nb\nc", "\nb\nc\n") == "a"
    assert cut_repetition("ok\nok", "") == "ok"
    looping = "handler,\n    handler_error,\n    handler_error_error_error,"
    assert cut_repetition(looping, "") == "handler,\n    handler_error,"
    assert cut_repetition("x = handler_error_error_error", "") == "x = "  # no half words
    assert indent_style("a\n\tb\n\tc\n") == "\t"
    assert indent_style("a\n  b\n    c\n") == "  "
    assert match_indentation("\tx", "a\n  b\n", "", first_line_indented=True) == "  x"


code_text = st.text(alphabet=st.sampled_from(list("ab(){}[]\"'`;:, \t\n=x")), max_size=40)


@settings(max_examples=300, deadline=None)
@given(prefix=code_text, suffix=code_text, raw=code_text, path=st.sampled_from(["a.py", "a.ts"]))
def test_never_returns_what_the_suffix_holds(prefix: str, suffix: str, raw: str, path: str) -> None:
    out = run(path, prefix, suffix, raw)
    if out:
        assert out.strip()
        assert not suffix.lstrip().startswith(out.strip())
        assert not suffix.startswith(out)
    assert all(line == line.rstrip() for line in out.split("\n"))


@settings(max_examples=200, deadline=None)
@given(prefix=code_text, suffix=code_text, raw=code_text, rules=st.sets(st.sampled_from(RULES)))
def test_never_raises_whatever_the_rules(prefix: str, suffix: str, raw: str, rules) -> None:
    out = run("a.go", prefix, suffix, raw, tuple(rules))
    assert isinstance(out, str)
