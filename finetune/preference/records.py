"""What preference tuning reads: the repository's feedback log, and the prompts its
suggestions were shown with.

`load_records` reads the log through the log's one reader
(`lsp_server.feedback.read_suggestions`); the rest of preference tuning sees only
its typed suggestion records. The log keeps what the server
laid out (the window's prefix and suffix, the snippets, the window size), not the
prompt, so `prompt_builder` lays the prompt out again with the server's own code:
the model is tuned on exactly the text it saw when it made the suggestion.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from finetune.config import PreferenceConfig
from lsp_server.errors import CodetailorError
from lsp_server.feedback import read_suggestions


def feedback_log(repo: str | Path) -> Path:
    """The folder of the repository's feedback log under $CODETAILOR_HOME."""
    from lsp_server.feedback import feedback_dir
    from lsp_server.model.loading import cache_home

    return feedback_dir(repo, cache_home())


def load_records(cfg: PreferenceConfig) -> list[Any]:
    """The suggestion records of the repository's feedback log (optionally one source)."""
    folder = Path(cfg.log_dir) if cfg.log_dir else feedback_log(cfg.repo)
    records = read_suggestions(folder, source=cfg.source or None)
    if len(records) < cfg.min_examples:
        raise CodetailorError(
            f"the feedback log {folder} holds {len(records)} suggestions; preference tuning "
            f"needs at least {cfg.min_examples}: use completions for a while first"
        )
    return records


def prompt_builder(tokenizer: Any, fmt: Any, default_window: int) -> Any:
    """Rebuild prompts with the server's own layout code (one PromptWindow per window size)."""
    from lsp_server.completion.window import PromptWindow

    windows: dict[tuple[int, str | None], PromptWindow] = {}

    def build(
        prefix: str,
        suffix: str,
        path: str | None,
        snippets: list[Any],
        window: int | None,
        repo: str | None,
    ) -> str:
        key = (int(window or default_window), repo)
        if key not in windows:
            windows[key] = PromptWindow(tokenizer, fmt, window_tokens=key[0], repo=repo)
        return windows[key].prompt_for(prefix, suffix, path=path, context=snippets)

    return build
