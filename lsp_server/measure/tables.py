"""Tables for people: what `eval`, `bench` and `feedback stats` print without `--json`.

rich draws them (it is in the environment; a missing rich falls back to aligned
plain text). `--json` stays the machine form and never comes through here.
Nested values (a dict of figures) become rows of their own ("before.exact_match"),
never a Python repr.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

Row = Sequence[Any]


def cell(value: Any) -> str:
    """A value as a person reads it: '-' for none, floats rounded, lists joined."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(cell(v) for v in value) or "-"
    return str(value)


def flatten(values: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """(key, value) rows, nested mappings spelled out as "outer.inner"."""
    rows: list[tuple[str, Any]] = []
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            rows += flatten(value, f"{name}.")
        else:
            rows.append((name, value))
    return rows


def print_table(
    columns: Sequence[str],
    rows: Sequence[Row],
    *,
    title: str | None = None,
    caption: str | None = None,
    stream: TextIO | None = None,
) -> None:
    """One table on `stream` (stdout): a header row, then `rows` (cells formatted here)."""
    out = stream if stream is not None else sys.stdout
    texts = [[cell(v) for v in row] for row in rows]
    try:
        from rich import box
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        _plain(columns, texts, title, caption, out)
        return
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAVY, title_justify="left")
    for i, name in enumerate(columns):
        numbers = all(_numeric(row[i]) for row in texts if i < len(row))
        table.add_column(name, justify="right" if numbers and i else "left", overflow="fold")
    for row in texts:
        table.add_row(*row)
    terminal = out.isatty()
    width = None if terminal else max(120, shutil.get_terminal_size((120, 24)).columns)
    Console(file=out, width=width, highlight=False, no_color=not terminal).print(table)


def print_summary(values: Mapping[str, Any], *, title: str | None = None) -> None:
    """A summary (nested figures included) as a two-column table."""
    print_table(("figure", "value"), flatten(values), title=title)


def _numeric(text: str) -> bool:
    """A number as `cell` writes it (or an empty cell, which does not decide)."""
    if text in ("", "-"):
        return True
    try:
        float(text.replace(",", "").rstrip("%"))
    except ValueError:
        return False
    return True


def _plain(
    columns: Sequence[str],
    rows: list[list[str]],
    title: str | None,
    caption: str | None,
    out: TextIO,
) -> None:
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    lines = [title] if title else []
    lines.append("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    lines += [caption] if caption else []
    print("\n".join(lines), file=out)
