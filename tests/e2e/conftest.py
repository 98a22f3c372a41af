"""Fixtures for end-to-end tests: real `codetailor serve` processes on tiny models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.rawclient import RawClient
from tests.tiny import build_model


@pytest.fixture(scope="session")
def endless_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model whose greedy choice is always the token "a": it never stops by itself.

    Every block adds nothing to the residual stream and every token embeds to the
    same vector, so the last hidden state is the same at every step; the output
    layer then prefers "a". The model still does all of its arithmetic, so a long
    generation takes real time: what the cancellation tests need.
    """
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    out = build_model(tmp_path_factory.mktemp("endless-model"), seed=2, layers=4)
    tokenizer = AutoTokenizer.from_pretrained(out)
    (token,) = tokenizer.encode("a", add_special_tokens=False)
    weights = load_file(out / "model.safetensors")
    for name, tensor in weights.items():
        if name.endswith(("o_proj.weight", "down_proj.weight")):
            weights[name] = torch.zeros_like(tensor)
    weights["model.embed_tokens.weight"] = torch.ones_like(weights["model.embed_tokens.weight"])
    head = torch.zeros_like(weights["lm_head.weight"])
    head[token] = 1.0
    weights["lm_head.weight"] = head
    save_file(weights, out / "model.safetensors", metadata={"format": "pt"})
    return out


def spawn(
    model: Path | str,
    *args: str,
    options: dict | None = None,
    ready: bool = True,
    root_uri: str | None = None,
):
    """A server on `model`, initialized (and loaded, unless `ready` is False), in the
    workspace `root_uri` (None: no workspace)."""
    client = RawClient.spawn("--model", str(model), *args)
    client.initialize(options, root_uri)
    if ready:
        status = client.wait_ready()
        assert status["state"] == "ready", status
    return client


@pytest.fixture(autouse=True, scope="session")
def _every_suggestion_shown() -> Iterator[None]:
    """The servers these tests start (and the editors start) show every suggestion: a
    tiny random model is never confident enough for the show-or-stay-quiet rule
    (tests/test_quiet.py tests the rule; these test what reaches the editor). Session
    scoped, so module-scoped servers start with it too."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CODETAILOR_QUIETNESS", "0")
        yield
