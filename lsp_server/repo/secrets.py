"""Secret redaction: what must never reach the tokenizer, the model or an adapter.

Each rule replaces a secret with a placeholder such as `<PRIVATE_KEY>` and is
counted, so the adapter's statistics say how much was removed. The rules err
on the side of removing: a hash in a test vector that looks like a key is lost
from training, which costs little, while a leaked key in an adapter costs a lot.
"""

from __future__ import annotations

import math
import re
from collections import Counter

# (kind, pattern, group holding the secret or 0 for the whole match)
_RULES: list[tuple[str, re.Pattern[str], int]] = [
    (
        "private_key",
        re.compile(
            r"-----BEGIN[ A-Z0-9]*PRIVATE KEY( BLOCK)?-----.*?"
            r"(-----END[ A-Z0-9]*PRIVATE KEY( BLOCK)?-----|\Z)",
            re.DOTALL,
        ),
        0,
    ),
    ("aws_key", re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b"), 0),
    ("google_api_key", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b"), 0),
    (
        "token",
        re.compile(
            r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}"
            r"|xox[abposr]-[A-Za-z0-9-]{10,}|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"
            r"|sk-(?:proj-|ant-)?[A-Za-z0-9_\-]{20,}|hf_[A-Za-z0-9]{30,}|glpat-[A-Za-z0-9_\-]{20,}"
            r"|npm_[A-Za-z0-9]{36})"
        ),
        0,
    ),
    (
        "jwt",
        re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
        0,
    ),
    ("url_password", re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s:/@]+:([^\s@/]{3,})@"), 1),
    (
        "password",
        # `db_password = "hunter22"`, `API_KEY: 'x'`, `"secret": "x"`, `SECRET_KEY=x` in .env
        re.compile(
            r"""(?ix)
            \b[\w.-]*(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?key|auth[_-]?token
                |access[_-]?token|refresh[_-]?token|private[_-]?key|client[_-]?secret)[\w.-]*
            ["']?\s*(?::=|=|:)\s*
            (?:(["'])(?P<quoted>[^"'\n]{4,})\1|(?P<bare>[^\s"'#;,)]{8,})$)
            """,
            re.MULTILINE,
        ),
        -1,
    ),
]

# Long runs from base64/hex alphabets that look random (checked by entropy).
_CANDIDATE = re.compile(r"(?<![\w/+=.-])[A-Za-z0-9+/_=-]{24,}(?![\w/+=-])")
_PLACEHOLDER = re.compile(
    r"^(?:<[^>]*>|\$\{?\w+\}?|\{\{?[^}]*\}?\}|x+|\*+|\.+|changeme|none|null)$", re.I
)


def entropy(text: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(text)
    return -sum(c / len(text) * math.log2(c / len(text)) for c in counts.values())


def looks_random(token: str) -> bool:
    """True for a string that is probably a key: long, mixed classes, high entropy."""
    if re.fullmatch(r"[0-9a-fA-F]+", token):
        return (
            len(token) >= 32 and entropy(token) > 3.0 and re.search(r"[a-fA-F]", token) is not None
        )
    classes = sum(bool(re.search(p, token)) for p in (r"[a-z]", r"[A-Z]", r"[0-9]"))
    # Identifiers (snake_case, CamelCase words) have low entropy and few digits.
    return classes == 3 and entropy(token) > 4.0 and sum(c.isdigit() for c in token) >= 2


def _bare_secret(value: str) -> bool:
    """An unquoted value (`.env` style) counts only if it is not an identifier or expression."""
    if re.fullmatch(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*", value):
        return looks_random(value)
    return any(c.isdigit() for c in value) or looks_random(value)


def redact(text: str) -> tuple[str, Counter[str]]:
    """`text` with secrets replaced by placeholders, and how many of each kind were found."""
    found: Counter[str] = Counter()
    for kind, pattern, group in _RULES:
        placeholder = f"<{kind.upper()}>"

        def replace(
            m: re.Match[str], kind: str = kind, group: int = group, ph: str = placeholder
        ) -> str:
            if group == -1:  # the password rule: whichever value group matched
                name = "quoted" if m.group("quoted") is not None else "bare"
                value = m.group(name)
                if _PLACEHOLDER.match(value.strip()) or value.startswith(("os.", "env", "<")):
                    return m.group(0)
                if name == "bare" and not _bare_secret(value):
                    return m.group(0)
                start, end = m.span(name)
            elif group:
                start, end = m.span(group)
            else:
                start, end = m.span()
            found[kind] += 1
            offset = m.start()
            whole = m.group(0)
            return whole[: start - offset] + ph + whole[end - offset :]

        text = pattern.sub(replace, text)

    def replace_random(m: re.Match[str]) -> str:
        if not looks_random(m.group(0)):
            return m.group(0)
        found["high_entropy"] += 1
        return "<SECRET>"

    text = _CANDIDATE.sub(replace_random, text)
    return text, found
