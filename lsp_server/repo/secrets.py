"""Secret redaction: what must never reach the tokenizer, the model, a prompt or an adapter.

Pure (no torch, no pygls). The detectors are Yelp's `detect-secrets`: its
vendor plugins (AWS, Azure, GitHub, GitLab, Slack, Stripe, SendGrid, Twilio,
OpenAI, JWT, npm, PyPI, Discord, Telegram, ...), its keyword plugin (with the
file type's own rules where the path is known) and its two entropy plugins,
with its heuristic filters against false positives. What it misses is added
here and only that: whole private-key blocks (it flags the first line only),
Google API keys, Hugging Face and Anthropic tokens, connection strings with an
empty user (`redis://:pw@host`), passwords in shell lines (`mysql -pX`,
`curl -u user:pw`, `sshpass -p`, `--requirepass`, `lftp -u`), `.netrc`,
`.pgpass` and space-separated `.conf` files, XML (`<password>`, `name=`/`key=`
properties), prose and comments, unquoted values in settings files (YAML,
`.env`, docker-compose, INI: a password-named key's value whatever it looks
like), credentials in code (`auth=("user", "pw")`, `HTTPBasicAuth`, a connect
call's third argument, `getenv("SECRET_KEY", "fallback")`, a Go DSN, a
connection string's `Password=`), framework keys (Django's `django-insecure-`,
WordPress `define('AUTH_KEY', ...)`), a password-shaped literal on a line about
credentials, and random-looking segments of file paths (`redact_path`).

Each secret becomes a placeholder such as `<PRIVATE_KEY>` and is counted, so
an adapter's statistics say how much was removed. The rules err on the side of
removing: a hash in a test vector that looks like a key is lost from a prompt,
which costs little, while a leaked key costs a lot. `lsp_server.measure.redaction`
measures recall on a planted set and the false-positive rate on ordinary code.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from functools import lru_cache

from detect_secrets.filters import heuristic
from detect_secrets.plugins.artifactory import ArtifactoryDetector
from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.high_entropy_strings import (
    Base64HighEntropyString,
    HexHighEntropyString,
    HighEntropyStringsPlugin,
)
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.keyword import (
    QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP,
    REGEX_BY_FILETYPE,
    KeywordDetector,
)
from detect_secrets.plugins.mailchimp import MailchimpDetector
from detect_secrets.plugins.npm import NpmDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector
from detect_secrets.util.filetype import determine_file_type

# detect-secrets' vendor plugins and the kind each one's findings are counted as.
_VENDOR: list[tuple[str, RegexBasedDetector]] = [
    ("aws_key", AWSKeyDetector()),
    ("cloud_key", AzureStorageKeyDetector()),
    ("jwt", JwtTokenDetector()),
    ("url_password", BasicAuthDetector()),
    *(
        ("token", plugin)
        for plugin in (
            GitHubTokenDetector(),
            GitLabTokenDetector(),
            SlackDetector(),
            StripeDetector(),
            SendGridDetector(),
            TwilioKeyDetector(),
            OpenAIDetector(),
            NpmDetector(),
            PypiTokenDetector(),
            DiscordBotTokenDetector(),
            TelegramBotTokenDetector(),
            MailchimpDetector(),
            SquareOAuthDetector(),
            ArtifactoryDetector(),
        )
    ),
]
_KEYWORD = KeywordDetector()
_ENTROPY: list[HighEntropyStringsPlugin] = [
    Base64HighEntropyString(limit=4.5),
    HexHighEntropyString(limit=3.0),
]
# Lines the keyword or entropy plugins can fire on; the others skip them (speed).
_KEYWORD_GATE = re.compile(r"pass|pwd|secret|key|contras", re.IGNORECASE)
_ENTROPY_GATE = re.compile(r"""['"`][A-Za-z0-9+/=_-]{9,}""")

# Multi-line: a whole private-key block (detect-secrets flags its first line only),
# including the `\n`-escaped one-line form of a GCP service-account JSON.
_PRIVATE_KEY = re.compile(
    r"-----BEGIN[ A-Z0-9]*PRIVATE KEY( BLOCK)?-----.*?"
    r"(-----END[ A-Z0-9]*PRIVATE KEY( BLOCK)?-----|\Z)",
    re.DOTALL,
)
_SECRET_WORDS = (
    r"password|passwd|passphrase|pass|pwd|pw|secret|api[_-]?key|access[_-]?key|auth[_-]?token"
    r"|access[_-]?token|refresh[_-]?token|private[_-]?key|client[_-]?secret|token|credentials?"
)
_SHELL_COMMANDS = (
    r"mysql\w*|mariadb|sshpass|(?:docker|podman|helm\s+registry|buildah|skopeo)\s+login"
    r"|ldap\w+|redis-cli|mongo(?:sh|dump|restore)?|psql|pg_dump|rabbitmqadmin|smbclient|htpasswd"
)
# (kind, pattern, name of the group holding the secret) for what detect-secrets misses.
_EXTRA: list[tuple[str, re.Pattern[str], str]] = [
    ("cloud_key", re.compile(r"\b(?P<s>AIza[0-9A-Za-z_\-]{35})\b"), "s"),
    ("cloud_key", re.compile(r"[?&]sig=(?P<s>[A-Za-z0-9%+/=]{20,})"), "s"),
    (
        "token",
        re.compile(
            r"\b(?P<s>gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}"
            r"|xox[abposr]-[A-Za-z0-9-]{10,}|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"
            r"|sk-(?:proj-|ant-)?[A-Za-z0-9_\-]{20,}|hf_[A-Za-z0-9]{30,}|glpat-[A-Za-z0-9_\-]{20,}"
            r"|npm_[A-Za-z0-9]{36}|SG\.[\w-]{16,}\.[\w-]{16,})"
        ),
        "s",
    ),
    (
        "jwt",
        re.compile(r"\b(?P<s>eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"),
        "s",
    ),
    # `scheme://user:pw@host`, and `redis://:pw@host` with no user.
    ("url_password", re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s:/@'\"]*:(?P<s>[^\s@/'\"]{3,})@"), "s"),
    # Django's generated key, whatever characters follow (`%`, `(` and `{` too)
    ("token", re.compile(r"""(?P<s>django-insecure-[^'"\s]{20,})"""), "s"),
    # lftp -u user,pw
    ("password", re.compile(r"""\blftp\b[^\n]*?\s-u\s+['"]?[^,\s'"]+,(?P<s>[^\s'"]+)"""), "s"),
    # Go's DSN `user:pw@tcp(host:3306)/db`
    (
        "url_password",
        re.compile(r"""(?<=[\w.-]:)(?P<s>[^\s"'@/:]{3,})@(?:tcp|udp|unix)\("""),
        "s",
    ),
    # `Server=db;User Id=u;Password=X;` in a connection string
    ("password", re.compile(r"""(?i)[;"']\s*(?:password|pwd)\s*=\s*(?P<s>[^;"'\s]{4,})"""), "s"),
    # mysql -pX, sshpass -p X, docker login -p X, ldapsearch -w X, redis-cli -a X, --password=X
    (
        "password",
        re.compile(
            rf"\b(?:{_SHELL_COMMANDS})\b[^\n|;&]*?\s(?:-p|-w|-a|--password[= ]|--pass[= ])[ \t]*"
            r"""(?P<q>['"]?)(?P<s>[^\s'"]{3,})(?P=q)(?=\s|$)"""
        ),
        "s",
    ),
    (
        "password",
        re.compile(
            r"\s--(?:password|passwd|pass|requirepass|masterauth)[= ]"
            r"""(?P<q>['"]?)(?P<s>[^\s'"-][^\s'"]{2,})"""
        ),
        "s",
    ),
    # auth=("user", "pw"), CREDENTIALS = ('user', 'pw'), HTTPBasicAuth('user', 'pw'), LOGIN = [..]
    (
        "password",
        re.compile(
            r"""(?i)(?:auth|credentials?|creds|login)\w*['"\]]?\s*(?:=|:|\()\s*[(\[]?\s*"""
            r"""(['"])[^'"\n]{1,64}\1\s*,\s*(?P<q>['"])(?P<s>[^'"\n]{4,})(?P=q)\s*[)\]]"""
        ),
        "s",
    ),
    (
        "password",
        re.compile(r"""\bcurl\b.*?\s(?:-u|--user)[ \t]*['"]?[^\s:'"]+:(?P<s>[^\s'"]+)"""),
        "s",
    ),
    (
        "password",
        re.compile(r"""\becho\s+(?P<q>['"]?)(?P<s>[^\s'"|]{4,})(?P=q)\s*\|.*--password-stdin"""),
        "s",
    ),
    # <password>X</password>
    ("password", re.compile(rf"(?i)<(?:\w*(?:{_SECRET_WORDS}))>(?P<s>[^<\s]{{4,}})</"), "s"),
    # define('DB_PASSWORD', 'X'), setenv("API_TOKEN", "X"), .login("user", "X")
    (
        "password",
        re.compile(
            r"""(?ix)(?:[dsp](?:efine|etenv|utenv|etProperty|et|ut)\(\s*['"][\w.-]*"""
            rf"""(?:{_SECRET_WORDS}|_key|_salt)\w*['"]\s*,"""
            r"""|\.login\(\s*(['"])[^'"]*\1\s*,)\s*(?P<q>['"])(?P<s>[^'"\n]{4,})(?P=q)"""
        ),
        "s",
    ),
    # os.environ.get('SECRET_KEY', 'fallback'), getenv("DB_PASSWORD", "x"), env('X', default='x')
    (
        "password",
        re.compile(
            r"""(?i)[gef](?:et(?:env|property)?|nv|etch)\(\s*['"][\w.-]*"""
            rf"""(?:{_SECRET_WORDS})\w*['"]\s*,\s*(?:default\s*=\s*)?"""
            r"""(?P<q>['"])(?P<s>[^'"\n]{4,})(?P=q)"""
        ),
        "s",
    ),
    # <property name="connection.password">X</property>, <add key="DbPassword" value="X"/>
    (
        "password",
        re.compile(
            rf"""(?i)[nk](?:ame|ey)=(['"])[\w.:-]*(?:{_SECRET_WORDS})\w*\1"""
            r"""(?:\s*>|\s+value=(['"]))(?P<s>[^<\s'"]{4,})"""
        ),
        "s",
    ),
    # new mysqli('db', 'user', 'pw'), DriverManager.getConnection(url, "user", "pw"),
    # mysql_connect(host, 'user', 'pw'): the third argument of a connect call
    (
        "password",
        re.compile(
            r"""[CcmP](?:onnect(?:ion)?\w*|ysqli|DO)\(\s*[^,()\n]+,\s*(['"])[^'"\n]*\1"""
            r"""\s*,\s*(?P<q>['"])(?P<s>[^'"\n]{4,})(?P=q)"""
        ),
        "s",
    ),
]
# `db_password = "hunter22"`, `API_KEY: 'x'`, `SECRET_KEY=x` in .env, `pw: x` in a comment,
# `Password=x;` in a connection string, `password is x` in prose. The short words
# (pass, pwd, pw) count only as a word of the name: `DB_PASS`, `dbPass`, not `sampwidth`.
_NAME = (
    r"(?:[\w.-]*(?i:password|passwd|passphrase|secret|api[_-]?key|access[_-]?key|private[_-]?key"
    r"|client[_-]?secret|credentials?)(?:[_.-][\w.-]*|[A-Z][\w.-]*)?"
    r"|[\w.-]*(?i:token)"  # GITHUB_TOKEN, authToken; not TOKENIZER_FILE
    r"|(?:\b|[\w.-]*[_.-]|[\w.-]*[a-z](?=[PT]))(?:pass|pwd|pw|Pass|Pwd|Pw|PASS|PWD|PW)"
    r"(?:[_.-][\w.-]*|[A-Z][\w.-]*)?)\b"
)
_ASSIGNMENT = re.compile(
    _NAME + r"""["'\]]?(?:\s*(?::=|=>|=|:)\s*|\s+(?:is|was)\s+)"""
    r"""(?:(?P<qq>["'])(?P<quoted>[^"'\n]{4,})(?P=qq)|(?P<bare>[^\s"'#;,)<>]{4,}))"""
)
_PASSWORD_NAME = re.compile(r"(?i)pass|pwd|pw")
# Rules for one kind of file, by its name: (path, pattern, group holding the secret).
_BY_FILE: list[tuple[re.Pattern[str], re.Pattern[str], str]] = [
    # `machine h login u password x` in .netrc / _netrc, the password to the next space.
    (re.compile(r"(?:^|/)[._]?netrc$"), re.compile(r"\bpassword\s+(?P<s>\S+)"), "s"),
    # `requirepass X` in redis.conf, `smtp_pass X` in a space-separated settings file
    (
        re.compile(r"(?:^|/)[^/]*\.(?:conf|cnf|cfg)$"),
        re.compile(r"(?m)^[ \t]*[\w.-]*(?:pass|secret|auth)[\w.-]*[ \t]+(?P<s>[^\s=:#]\S*)[ \t]*$"),
        "s",
    ),
    # host:port:database:user:password in .pgpass
    (
        re.compile(r"(?:^|/)(?:\.pgpass|pgpass\.conf)$"),
        re.compile(r"(?m)^[^#:\n][^:\n]*:[^:\n]*:[^:\n]*:[^:\n]*:(?P<s>\S.*)$"),
        "s",
    ),
]
# `machine h login u password x` in .netrc (a literal context only).
_NETRC = re.compile(r"\b(?:password|passwd|pass)\s+(?P<bare>[^\s\"'#;,)<>=:]{4,})")
_CANDIDATE = re.compile(r"(?<![\w/+=.-])[A-Za-z0-9+/_-]{24,}={0,2}(?![\w/+=-])")
# Lines the assignment rules can fire on.
_NAME_GATE = re.compile(r"pass|pw|secret|key|token|credential", re.IGNORECASE)
_PLACEHOLDER = re.compile(
    r"^(?:<[^>]*>|\$\{?\w+\}?|\{\{?[^}]*\}?\}|%\(?\w+\)?s?|x+|\*+|\.+"
    r"|changeme|none|null|true|false)$",
    re.I,
)
_PLACEHOLDER_IN = re.compile(r"<[A-Z_]+>")  # what an earlier rule put in
_FORMAT = re.compile(r"%[-+ #0]*\d*(?:\.\d+)?[sdrfxi]|\{[^}]*\}")
# CamelCase and snake_case names with numbers (`Qwen2_5OmniThinkerForGeneration`). Each
# piece is as long as it can be (a run of capitals ends where a capitalised word starts), so
# a run splits one way only: with `[A-Z]{2,}` free to end anywhere, an alphabet such as
# `ABC...XYZabc...xyz0123456789+/` (base64's) took exponential time to not match.
_WORDS = re.compile(
    r"(?:[A-Z][a-z]{2,}(?![a-z])|[a-z]{2,}(?![a-z])|[A-Z]{2,}(?![A-Za-z])"
    r"|[A-Z]{2,}(?=[A-Z][a-z])|[0-9_]+(?![0-9_]))+"
)
# A comment, or a shell-style `export NAME=value` / `NAME=value command` line.
_COMMENT = re.compile(r"^\s*(?:#|//|/\*|\*|--|;|<!--|export\s|[A-Z][A-Z0-9_]*=)|\s(?:#|//|/\*)\s")
_CONFIG_NAMES = re.compile(
    r"(?:^|/)(?:\.env[\w.-]*|[._]netrc|\.pgpass|\.npmrc|\.pypirc|[^/]*\.(?:ya?ml|ini|cfg|conf|cnf"
    r"|properties|toml|env|md|rst|txt|sh|bash|zsh|fish|ps1)|Makefile|Dockerfile)$"
)
# A quoted literal on a line about credentials (`add_password(None, url, 'u', 'Tiger42!x')`,
# `simple_bind_s(dn, 'x')`, `jwtKey = []byte("x")`) counts when it is shaped like a password.
_CONTEXT_WORDS = ("pass", "pwd", "secret", "key", "token", "auth", "login", "bind", "cred")
_LITERAL = re.compile(r"""(?<![\w\\])(['"])([^'"\s\\]{8,64})\1""")
_SETTINGS_NAMES = re.compile(
    r"(?:^|/)(?:\.env[\w.-]*|[._]netrc|\.pypirc|[^/]*\.(?:ya?ml|ini|cfg|conf|cnf|properties|toml"
    r"|env)|docker-compose[\w.-]*)$"
)
# Longer lines (minified code) are scanned in pieces, so no rule's cost grows with the line.
MAX_PIECE = 2048


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
    if _WORDS.fullmatch(token) or _sequential(token):
        return False
    digit_runs = len(re.findall(r"[0-9]+", token))
    return classes == 3 and entropy(token) > 4.0 and digit_runs >= 2


def _sequential(value: str) -> bool:
    """An alphabet or a run of keys (`ABCDEFGH...`, `abc...xyz0123`), not a secret."""
    steps = sum(ord(b) - ord(a) == 1 for a, b in zip(value, value[1:], strict=False))
    return len(value) >= 16 and steps >= 0.8 * (len(value) - 1)


def _has_digit(value: str) -> bool:
    return any(c.isdigit() for c in value)


def _keylike(value: str) -> bool:
    """A quoted value that may be a key or a token: no spaces, and digits or randomness."""
    return " " not in value and (_has_digit(value) or entropy(value) > 3.5)


def _bare_secret(value: str, literal: bool = False) -> bool:
    """An unquoted value counts only if it is not an identifier, a call or an expression.

    Where values are literal (`literal`: a comment, prose, a config file), an
    identifier-like word with letters and digits counts too (`Pa55word940199`).
    """
    if re.fullmatch(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*", value):
        mixed = re.search(r"\d", value) and re.search("[A-Za-z]", value)
        return bool(literal and len(value) >= 6 and mixed) or looks_random(value)
    if re.search(r"[(\[{]|^\d+$|^[\d.]+$", value):
        return False
    return _has_digit(value) or looks_random(value)


def _plausible(value: str, line: str = "") -> bool:
    """detect-secrets' heuristic filters, plus placeholders; `line` is checked for references
    (`secret = get_secret()`) only when given, i.e. for unquoted values."""
    value = value.strip()
    return not (
        len(value) < 4
        or _PLACEHOLDER.match(value)
        or value.startswith(("os.", "env", "process.env", "self.", "<", "$"))
        or heuristic.is_sequential_string(value)
        or _sequential(value)
        or _FORMAT.search(value)
        or heuristic.is_potential_uuid(value)
        or heuristic.is_templated_secret(value)
        or heuristic.is_not_alphanumeric_string(value)
        or (line and heuristic.is_indirect_reference(line))
    )


def _literal(line: str, path: str | None) -> bool:
    """Unquoted values are literals here: a comment, or a config or prose file."""
    return bool(_COMMENT.search(line) or (path and _CONFIG_NAMES.search(path)))


def _keyword_rules(path: str | None) -> dict[re.Pattern[str], int]:
    """The keyword plugin's rules for the file type of `path` (quotes required if unknown)."""
    if path is None:
        return QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP
    return REGEX_BY_FILETYPE.get(determine_file_type(path), QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP)


def _replace(text: str, values: Iterable[str], kind: str, found: Counter[str]) -> str:
    wanted = {v for v in values if v and len(v) >= 4 and not _PLACEHOLDER_IN.search(v)}
    for value in sorted(wanted, key=len, reverse=True):
        if value in text:
            found[kind] += 1
            text = text.replace(value, f"<{kind.upper()}>")
    return text


def _line_values(line: str, path: str | None) -> list[tuple[str, str]]:
    """(kind, value) for what the keyword, entropy and assignment rules find in one line."""
    out: list[tuple[str, str]] = []
    literal = _literal(line, path)
    if _KEYWORD_GATE.search(line):
        rules = _keyword_rules(path)
        for value in _KEYWORD.analyze_string(line, denylist_regex_to_group=rules):
            quoted = value[:1] in "\"'"
            if _plausible(value, "" if quoted else line) and (
                quoted or _bare_secret(value, literal)
            ):
                out.append(("password", value.strip("\"'")))
    if _ENTROPY_GATE.search(line):
        for plugin in _ENTROPY:
            for value in plugin.analyze_string(line):
                if plugin.calculate_shannon_entropy(value) > plugin.entropy_limit and _plausible(
                    value
                ):
                    out.append(("high_entropy", value))
    low = line.lower()
    if any(word in low for word in _CONTEXT_WORDS):
        out += [("password", m.group(2)) for m in _LITERAL.finditer(line) if _shaped(m.group(2))]
    if not _NAME_GATE.search(line):
        return out
    matches = [*_ASSIGNMENT.finditer(line), *(_NETRC.finditer(line) if literal else ())]
    for m in matches:
        name = "quoted" if m.re is _ASSIGNMENT and m.group("quoted") is not None else "bare"
        value = m.group(name)
        if name == "bare" and literal:  # a literal runs to the next space: `Pa55#word!`
            value = line[m.start(name) :].split()[0].rstrip(";,")
        quoted = name == "quoted"
        if quoted and not _PASSWORD_NAME.search(m.group(0)) and not _keylike(value):
            continue  # `TOKEN_FILE = "tokens.json"`: a key's or token's value is not a word
        if _plausible(value, "" if quoted else line) and (
            quoted or _bare_secret(value, literal) or _settings_password(m, value, path)
        ):
            out.append(("password", value))
    return out


def _shaped(value: str) -> bool:
    """A human password (`coffee6517`, `Tiger42!x`): letters and digits, no path, URL, format
    or dotted name, and not an identifier with separators (`iso8859_15`, `sha3-256`)."""
    letters = sum(c.isalpha() for c in value)
    digits = sum(c.isdigit() for c in value)
    return (
        letters >= 4
        and digits >= 2
        and not re.search(r"[/.:%{}<>()\[\],;|]", value)
        and not re.fullmatch(r"[A-Za-z]+[0-9]*(?:[_-][A-Za-z0-9]+)+", value)
        and _plausible(value)
    )


def _settings_password(m: re.Match[str], value: str, path: str | None) -> bool:
    """In a settings file (YAML, .env, INI, ...; not prose), a password-named key's bare value
    is the password whatever it looks like (`MAIL_PASSWORD=X+MSBnOO-f+cag_^x`)."""
    name = m.group(0)[: m.start("bare") - m.start()]
    return bool(
        path
        and _SETTINGS_NAMES.search(path)
        and _PASSWORD_NAME.search(name)
        and len(value) >= 6
        and not value.startswith(("%", "{", "("))
    )


def redact(text: str, path: str | None = None) -> tuple[str, Counter[str]]:
    """`text` with secrets replaced by placeholders, and how many of each kind were found.

    `path` (the file's name) picks the keyword rules of its type (YAML, INI,
    Go, ...); without it, keyword values must be quoted or look like secrets.
    """
    found: Counter[str] = Counter()

    def private_key(m: re.Match[str]) -> str:
        found["private_key"] += 1
        return "<PRIVATE_KEY>"

    text = _PRIVATE_KEY.sub(private_key, text)
    for kind, plugin in _VENDOR:
        text = _replace(text, plugin.analyze_string(text), kind, found)
    by_file = [(("password", p, g)) for name, p, g in _BY_FILE if path and name.search(path)]
    for kind, pattern, group in [*_EXTRA, *by_file]:
        values = [m.group(group) for m in pattern.finditer(text)]
        if kind == "password":  # a value is replaced all over the text: no plain words
            values = [v for v in values if _plausible(v) and (len(v) >= 6 or _has_digit(v))]
        text = _replace(text, values, kind, found)
    lines = text.split("\n")
    for i, line in enumerate(lines):
        pieces = _pieces(line)
        for j, piece in enumerate(pieces):
            for kind, value in _line_values(piece, path):
                piece = _replace(piece, [value], kind, found)
            pieces[j] = _CANDIDATE.sub(_counting(found), piece)
        lines[i] = "".join(pieces)
    return "\n".join(lines), found


def _pieces(line: str) -> list[str]:
    """`line` cut into pieces of at most MAX_PIECE characters, after a space, `;` or `,` if any."""
    out, start = [], 0
    while len(line) - start > MAX_PIECE:
        end = start + MAX_PIECE
        cut = max(line.rfind(c, start + MAX_PIECE // 2, end) for c in " ;,")
        end = cut + 1 if cut > start else end
        out.append(line[start:end])
        start = end
    out.append(line[start:])
    return out


def _counting(found: Counter[str]) -> Callable[[re.Match[str]], str]:
    def replace_random(m: re.Match[str]) -> str:
        if not looks_random(m.group(0)):
            return m.group(0)
        found["high_entropy"] += 1
        return "<SECRET>"

    return replace_random


@lru_cache(maxsize=4096)
def redact_path(path: str) -> str:
    """A file path with secrets in it replaced (it heads the file in prompts).

    Beyond `redact`, any path segment whose stem looks random (a key used as a
    folder or file name) is replaced.
    """
    clean, _ = redact(path)
    parts = clean.split("/")
    for i, part in enumerate(parts):
        stem = part.split(".", 1)[0] if not part.startswith(".") else part
        if len(stem) >= 16 and looks_random(stem):
            parts[i] = "<SECRET>" + part[len(stem) :]
    return "/".join(parts)
