"""Every subcommand's `--help` names the right program and gives a whole description."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from lsp_server import cli


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, (*path, name))


def _help(argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        cli.main([*argv, "--help"])
    assert done.value.code == 0, argv
    return out.getvalue()


COMMANDS = [path for path, _ in _walk(cli.build_parser()) if path]


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_subcommand_help_names_its_program_and_describes_it_whole(
    path: tuple[str, ...],
) -> None:
    text = _help(list(path))
    usage = "usage: codetailor " + " ".join(path)
    assert text.startswith(usage), text[:200]
    lines = text.split("\n\n")
    description = lines[1].strip() if len(lines) > 1 else ""
    assert description and not description.startswith(("positional", "options")), text[:400]
    first_paragraph = " ".join(description.split())
    assert first_paragraph[-1] in ".):", f"cut mid-sentence: {first_paragraph!r}"
