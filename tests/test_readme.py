"""The README opens with a quick start whose commands are real, and says plainly where a
model is chosen that the default one has no FIM tokens and how to pick a FIM model."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from lsp_server import cli

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _quick_start() -> list[str]:
    sections = README.split("\n## ")
    assert sections[1].startswith("Quick start"), "the first section is the quick start"
    block = re.search(r"```sh\n(.*?)```", sections[1], re.S)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_quick_start_is_ten_lines_from_install_to_the_difference() -> None:
    lines = _quick_start()
    assert len(lines) <= 10
    text = "\n".join(lines)
    for step in ("make install", "codetailor serve", "VS Code", "Neovim", "Emacs"):
        assert step in text
    for step in ("codetailor complete", "codetailor finetune", "--adapter"):
        assert step in text


def test_every_codetailor_command_in_the_quick_start_parses() -> None:
    parser = cli.build_parser()
    for line in _quick_start():
        words = shlex.split(line, comments=True)
        if words and words[0].endswith("bin/codetailor"):
            args, extra = parser.parse_known_args(words[1:])
            assert not extra, line
            assert callable(args.func)


def test_the_models_section_says_the_default_sees_only_the_prefix() -> None:
    models = README.split("\n## Models", 1)[1].split("\n## ", 1)[0]
    assert "no fill-in-the-middle (FIM) tokens" in models
    assert "only the code before the cursor" in models
    assert "--model Qwen/Qwen2.5-Coder-1.5B" in models
