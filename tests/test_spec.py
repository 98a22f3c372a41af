"""What the host must hold (lsp_server.spec): when it loads again, when it swaps, and how
the `adapter` setting's words are read."""

from __future__ import annotations

from lsp_server.spec import AdapterRef, Holding, ModelSpec, fixed_adapter, folder, is_auto


def test_a_new_spec_loads_new_adapters_swap_and_the_same_holding_does_nothing():
    held = Holding(ModelSpec(model="tiny"), (None,))
    one = AdapterRef("/adapters/one", "repo-one")
    assert held.change_to(Holding(ModelSpec(model="tiny"), (None,))) is None
    assert held.change_to(Holding(ModelSpec(model="tiny"), (one,))) == "swap"
    assert held.change_to(Holding(ModelSpec(model="tiny"), (None, one))) == "swap"
    assert held.change_to(Holding(ModelSpec(model="tiny", dtype="int8"), (None,))) == "load"
    assert held.change_to(Holding(ModelSpec(model="tiny", prompt_format="starcoder"))) == "load"
    assert Holding(ModelSpec(), (one, None)).default == one


def test_the_adapter_settings_words_are_read_once():
    assert is_auto(" Auto ") and not is_auto("none") and not is_auto(None)
    assert fixed_adapter("auto") is None and fixed_adapter("NONE") is None
    assert fixed_adapter(None) is None and fixed_adapter("  ") is None
    assert fixed_adapter(" /my/lora ") == "/my/lora"
    assert folder(AdapterRef("/my/lora")) == "/my/lora" == str(AdapterRef("/my/lora"))
    assert folder(None) is None
