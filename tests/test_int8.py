"""`--dtype int8`: the linear layers' weights in int8 on the CPU, through the usual load path."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsp_server.errors import CodetailorError
from lsp_server.model.loading import load_model, pick_device
from lsp_server.session.settings import DTYPES


def test_int8_is_a_cpu_dtype() -> None:
    assert pick_device("cpu", "int8") == ("cpu", "int8")
    with pytest.raises(CodetailorError, match="CPU only"):
        pick_device("mps", "int8")
    assert "int8" in DTYPES


def test_int8_model_loads_and_completes(tiny_model_dir: Path) -> None:
    import torch

    from lsp_server.model.factory import completer_over

    fp32 = load_model(str(tiny_model_dir), dtype="float32")
    int8 = load_model(str(tiny_model_dir), dtype="int8")
    assert int8.dtype == "int8"
    assert int8.fingerprint == fp32.fingerprint  # same base: adapters still fit
    linear = [m for m in int8.model.modules() if isinstance(m, torch.nn.Linear)]
    assert not linear, "every nn.Linear is replaced by its int8 counterpart"
    completion = completer_over(int8).complete("def add(a, b):\n    return", 24, max_tokens=4)
    assert completion.generation.generated_tokens > 0
    # The same prompt's logits stay close to fp32's.
    ids = torch.tensor([int8.tokenizer.encode("import json\nimport os\n")])
    with torch.no_grad():
        a, b = fp32.model(ids).logits, int8.model(ids).logits
    assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.99
