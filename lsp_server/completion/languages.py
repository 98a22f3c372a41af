"""What the prompt and post-processing need to know about a file's language.

Pure: a table from file extension to the language's tree-sitter grammar name and
comment syntax. Comment syntax spells file path headers for models without a
native file separator; the grammar name picks a tree-sitter parser, when one is
installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath


@dataclass(frozen=True)
class Language:
    """A programming language as the prompt sees it."""

    name: str  # tree-sitter-language-pack's name for the grammar
    line_comment: str = ""  # e.g. "#" or "//"; empty where the language has none
    block_comment: tuple[str, str] = ("", "")  # e.g. ("/*", "*/")

    def comment(self, text: str) -> str:
        """`text` (one line) as a comment in this language; plain text if it has no comments."""
        if self.line_comment:
            return f"{self.line_comment} {text}"
        start, end = self.block_comment
        return f"{start} {text} {end}" if start else text


C_LIKE = ("//", ("/*", "*/"))
HASH = ("#", ("", ""))

_TABLE: dict[str, tuple[str, str, tuple[str, str]]] = {
    # extension: (grammar, line comment, block comment)
    ".py": ("python", *HASH),
    ".pyi": ("python", *HASH),
    ".js": ("javascript", *C_LIKE),
    ".mjs": ("javascript", *C_LIKE),
    ".cjs": ("javascript", *C_LIKE),
    ".jsx": ("javascript", *C_LIKE),
    ".ts": ("typescript", *C_LIKE),
    ".mts": ("typescript", *C_LIKE),
    ".tsx": ("tsx", *C_LIKE),
    ".go": ("go", *C_LIKE),
    ".rs": ("rust", *C_LIKE),
    ".c": ("c", *C_LIKE),
    ".h": ("c", *C_LIKE),
    ".cc": ("cpp", *C_LIKE),
    ".cpp": ("cpp", *C_LIKE),
    ".hpp": ("cpp", *C_LIKE),
    ".java": ("java", *C_LIKE),
    ".kt": ("kotlin", *C_LIKE),
    ".cs": ("csharp", *C_LIKE),
    ".swift": ("swift", *C_LIKE),
    ".scala": ("scala", *C_LIKE),
    ".php": ("php", *C_LIKE),
    ".rb": ("ruby", *HASH),
    ".sh": ("bash", *HASH),
    ".bash": ("bash", *HASH),
    ".yaml": ("yaml", *HASH),
    ".yml": ("yaml", *HASH),
    ".toml": ("toml", *HASH),
    ".r": ("r", *HASH),
    ".lua": ("lua", "--", ("--[[", "]]")),
    ".sql": ("sql", "--", ("/*", "*/")),
    ".hs": ("haskell", "--", ("{-", "-}")),
    ".html": ("html", "", ("<!--", "-->")),
    ".css": ("css", "", ("/*", "*/")),
    ".json": ("json", "", ("", "")),
    ".md": ("markdown", "", ("<!--", "-->")),
}

# Unknown files get '#' headers: most scripting and config languages use it.
PLAIN = Language("text", "#")


# LSP language identifiers that differ from the file extension's grammar name.
_LSP_IDS = {
    "typescriptreact": ".tsx",
    "javascriptreact": ".jsx",
    "shellscript": ".sh",
    "csharp": ".cs",
    "makefile": "Makefile",
    "dockerfile": "Dockerfile",
}


def language_for(path: str | None, language_id: str | None = None) -> Language:
    """The language of `path` from its extension (or name, e.g. 'Makefile'); PLAIN if unknown.

    `language_id` (an LSP languageId such as "python" or "typescriptreact")
    decides where the path does not, e.g. for an untitled buffer.
    """
    if path:
        p = PurePath(path)
        if p.name in ("Makefile", "Dockerfile", "CMakeLists.txt"):
            return Language(p.name.lower(), "#")
        entry = _TABLE.get(p.suffix.lower())
        if entry is not None:
            name, line, block = entry
            return Language(name, line, block)
    if language_id:
        alias = _LSP_IDS.get(language_id)
        if alias:
            return language_for(alias if alias[0] != "." else f"x{alias}")
        for name, line, block in _TABLE.values():
            if name == language_id:
                return Language(name, line, block)
    return PLAIN
