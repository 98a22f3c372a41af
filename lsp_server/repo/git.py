"""One way to run git on a user's folder, with nothing in the folder able to run a command.

A folder can arrive with its `.git` by archive, shared folder or copied
checkout, so its configuration is the folder author's, not the user's. Git
reads the repository's `.git/config` (and `config.worktree`, and whatever they
include) whatever we do, and several keys there name commands git runs while
listing files, reading history or diffing: `core.fsmonitor`, hooks
(`post-index-change` fires when `status` refreshes the index), filter drivers
(`filter.X.clean/smudge/process`, run by `status` and `diff` on the work tree),
diff drivers (`diff.external`, `diff.X.command`, `diff.X.textconv`),
`gpg.program` through `log.showSignature`, and transports (`core.sshCommand`,
`ext::` remotes, credential helpers) a partial clone's lazy fetch would start.

`run_git(root, *args)` defuses all of them:
- the environment: inherited `GIT_*` variables are dropped (a `GIT_DIR` from
  the caller's shell must not redirect us), system and global configuration
  are not read (`GIT_CONFIG_NOSYSTEM`, `GIT_CONFIG_GLOBAL=/dev/null`; only the
  user's own `core.excludesFile` and `safe.directory` are carried over, so the
  listing still honours the user's global ignore file), no system attributes,
  no lazy fetch and no transport (`GIT_ALLOW_PROTOCOL=none`, which outranks a
  repository's `protocol.ext.allow=always`), no replace refs, no optional index
  writes, no prompts;
- command-line configuration, which outranks every file: each fixed executing
  key is blanked (`core.fsmonitor=false`, `core.hooksPath=/dev/null`,
  `core.sshCommand=`, `diff.external=`, `protocol.allow=never`, ...), and every
  filter, diff and merge driver that the repository's configuration defines is
  enumerated first (`git config --list`, which runs nothing) and blanked
  key by key (`filter.X.clean=` and so on: git runs no driver command that is
  empty, and `required=false` keeps a blanked filter from being an error);
  `.gitattributes` may still name a driver, but no driver has a command;
- diff-like commands (`log`, `show`, `diff`, ...) get `--no-ext-diff` and
  `--no-textconv` after the subcommand, so history mining reads raw blobs.

Aliases cannot shadow the builtins run here, and a pager starts only on a
terminal (stdout here is a pipe; `GIT_PAGER=cat` regardless). `safe.directory`
keeps git's own rule: a repository owned by someone else is refused, and the
callers fall back to reading the folder without git. A `.git` file whose
`gitdir:` points elsewhere is discovered by git itself, so the same
configuration and the same overrides apply to it.
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

GIT_TIMEOUT_S = 60.0

# Command-line configuration: every key here names or enables a command, or
# changes output a parser reads (colour, quoting, prefixes, signatures).
_FIXED_CONFIG: tuple[tuple[str, str], ...] = (
    ("core.fsmonitor", "false"),
    ("core.hooksPath", "/dev/null"),
    ("core.sshCommand", ""),
    ("core.gitProxy", ""),
    ("core.askPass", ""),
    ("core.pager", "cat"),
    ("core.editor", ":"),
    ("core.attributesFile", "/dev/null"),
    ("core.untrackedCache", "false"),
    ("credential.helper", ""),
    ("diff.external", ""),
    ("gpg.program", ""),
    ("gpg.ssh.program", ""),
    ("gpg.x509.program", ""),
    ("log.showSignature", "false"),
    ("protocol.allow", "never"),
    ("submodule.recurse", "false"),
    ("uploadpack.packObjectsHook", ""),
    ("color.ui", "never"),
    ("core.quotePath", "false"),
    ("diff.noprefix", "false"),
    ("diff.mnemonicPrefix", "false"),
    ("diff.relative", "false"),
    ("log.decorate", "false"),
)
# Per driver: the keys that hold a command, and what makes a blanked one harmless.
_DRIVER_KEYS = {
    "filter": (("clean", ""), ("smudge", ""), ("process", ""), ("required", "false")),
    "diff": (("command", ""), ("textconv", "")),
    "merge": (("driver", ""),),
}
_DIFF_LIKE = frozenset(
    {"log", "show", "diff", "diff-tree", "diff-index", "diff-files", "whatchanged", "blame"}
)
_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_ATTR_NOSYSTEM": "1",
    "GIT_NO_LAZY_FETCH": "1",  # git >= 2.39.4: a partial clone fetches no missing object
    # ... and for older git: no transport at all. This overrides the repository's own
    # `protocol.ext.allow=always`, which `protocol.allow=never` on the command line does not.
    "GIT_ALLOW_PROTOCOL": "none",
    "GIT_NO_REPLACE_OBJECTS": "1",
    "GIT_OPTIONAL_LOCKS": "0",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "true",
    "SSH_ASKPASS": "true",
    "GIT_PAGER": "cat",
    "PAGER": "cat",
    "GIT_PROTOCOL_FROM_USER": "0",
}


def run_git(
    root: Path, *args: str, timeout: float = GIT_TIMEOUT_S, stdin: bytes | None = None
) -> bytes | None:
    """git's stdout for `git -C root ARGS`, run so that the folder cannot make git run
    anything; None when git is missing, fails, or runs past `timeout` seconds. `stdin`:
    what git reads (`cat-file --batch`); nothing by default."""
    config = [*_FIXED_CONFIG, *_user_config()]
    keys = _git(root, ("config", "-z", "--list", "--name-only"), config, timeout)
    if keys is None:  # configuration git cannot read: the command would fail on it too
        return None
    config += _driver_overrides(keys.decode("utf-8", "surrogateescape").split("\0"))
    if args and args[0] in _DIFF_LIKE:
        args = (args[0], "--no-ext-diff", "--no-textconv", *args[1:])
    return _git(root, args, config, timeout, stdin=stdin)


def git_text(root: Path, *args: str, timeout: float = GIT_TIMEOUT_S) -> str | None:
    """`run_git`'s output as stripped text; None also for empty output."""
    out = run_git(root, *args, timeout=timeout)
    text = out.decode("utf-8", "surrogateescape").strip() if out is not None else ""
    return text or None


FETCH_TIMEOUT_S = 900.0


def fetch_commit(url: str, commit: str, dest: Path, *, timeout: float = FETCH_TIMEOUT_S) -> bool:
    """Fetch the one commit `commit` of the repository at `url` (https only) into the bare
    repository `dest` (created if absent), without history; whether it arrived.

    The same defused git as `run_git`, with one transport let through: https, for this
    command alone (`GIT_ALLOW_PROTOCOL=https`, `protocol.https.allow=always` above the
    blanket `protocol.allow=never`). Nothing is checked out, so no filter or hook runs.
    """
    if not url.startswith("https://"):
        return False
    dest.mkdir(parents=True, exist_ok=True)
    config = [*_FIXED_CONFIG, ("protocol.https.allow", "always")]
    if _git(dest, ("init", "-q", "--bare"), config, timeout) is None:
        return False
    fetch = ("fetch", "-q", "--depth", "1", "--no-tags", url, commit)
    if _git(dest, fetch, config, timeout, allow="https") is None:
        return False
    return _git(dest, ("cat-file", "-e", f"{commit}^{{commit}}"), config, timeout) is not None


def _driver_overrides(keys: Iterable[str]) -> list[tuple[str, str]]:
    """Blank every command key of every driver named in `keys` (`filter.X.clean`, ...)."""
    found: set[tuple[str, str]] = set()
    for key in keys:
        section, dot, rest = key.partition(".")
        name, dot2, _ = rest.rpartition(".")
        if dot and dot2 and section.lower() in _DRIVER_KEYS:
            found.add((section.lower(), name))
    return [
        (f"{section}.{name}.{key}", value)
        for section, name in sorted(found)
        for key, value in _DRIVER_KEYS[section]
    ]


def _git(
    root: Path | None,
    args: Iterable[str],
    config: list[tuple[str, str]],
    timeout: float = GIT_TIMEOUT_S,
    allow: str = "none",
    stdin: bytes | None = None,
) -> bytes | None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(_ENV)
    env["GIT_ALLOW_PROTOCOL"] = allow  # "none" but for `fetch_commit`
    # GIT_CONFIG_KEY_n takes a key whole (unlike `-c`, which splits at the first '='),
    # so a driver named `a=b` is blanked too; it ranks with `-c`, above every file.
    env["GIT_CONFIG_COUNT"] = str(len(config))
    for i, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    where = ["-C", str(root)] if root is not None else []
    try:
        done = subprocess.run(
            ["git", "--no-pager", *where, *args],
            capture_output=True,
            input=stdin if stdin is not None else b"",
            env=env,
            timeout=timeout,
            cwd=None if root is not None else os.path.abspath(os.sep),
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def _user_config() -> tuple[tuple[str, str], ...]:
    """The two keys of the user's own global configuration that listing needs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    found: list[tuple[str, str]] = []
    for key, kind in (("core.excludesFile", "path"), ("safe.directory", "path")):
        try:
            done = subprocess.run(
                ["git", "config", "--global", "-z", f"--type={kind}", "--get-all", key],
                capture_output=True,
                stdin=subprocess.DEVNULL,
                env=env,
                timeout=GIT_TIMEOUT_S,
                cwd=os.path.abspath(os.sep),
            )
        except (OSError, subprocess.SubprocessError):
            continue
        values = done.stdout.decode("utf-8", "surrogateescape").split("\0")
        found += [(key, v) for v in values if v and done.returncode == 0]
    return tuple(found)
