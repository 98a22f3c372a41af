"""Adapters without codetailor.json are checked against the base (finding 11)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lsp_server.errors import CodetailorError
from lsp_server.model.loading import load_model
from tests.fixtures.adapters import make_adapter
from tests.tiny import build_model


def _say_base(adapter: Path, base: str) -> None:
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = base
    (adapter / "adapter_config.json").write_text(json.dumps(config))


def test_a_4_layer_adapter_on_a_2_layer_base_is_refused(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    deeper = build_model(tmp_path / "deeper", layers=4)
    adapter = make_adapter(deeper, tmp_path / "adapter")
    _say_base(adapter, str(tiny_model_dir))  # even when its recorded name agrees
    with pytest.raises(CodetailorError, match=r"does not fit model .*layers\.[23]\."):
        load_model(str(tiny_model_dir), adapter=adapter)


def test_a_plain_adapter_naming_another_base_is_refused(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter")
    _say_base(adapter, "Qwen/Qwen2.5-Coder-1.5B")
    with pytest.raises(CodetailorError, match=r"made for 'Qwen/Qwen2.5-Coder-1.5B'"):
        load_model(str(tiny_model_dir), adapter=adapter)


def test_a_plain_adapter_for_this_base_loads(tmp_path: Path, tiny_model_dir: Path) -> None:
    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter")
    loaded = load_model(str(tiny_model_dir), adapter=adapter)
    assert loaded.adapter is not None and loaded.adapter.meta is None


@pytest.mark.parametrize(("recorded", "loads"), [("org/tiny", False), ("org/Tiny-FIM", True)])
def test_a_base_name_inside_another_is_not_the_same_base(
    tmp_path: Path, tiny_fim_model_dir: Path, recorded: str, loads: bool
) -> None:
    """Issue 28: an adapter for `tiny` loaded on `tiny-fim` (the one name holds the other)."""
    import shutil

    base = Path(shutil.copytree(tiny_fim_model_dir, tmp_path / "tiny-fim"))
    adapter = make_adapter(base, tmp_path / "adapter")  # same shapes: only the name can tell
    _say_base(adapter, recorded)
    if loads:
        assert load_model(str(base), adapter=adapter).adapter is not None
    else:
        with pytest.raises(CodetailorError, match=r"made for 'org/tiny'"):
            load_model(str(base), adapter=adapter)
