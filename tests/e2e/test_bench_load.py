"""`codetailor bench load` (real processes): each stage of load to ready, on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lsp_server.measure import load_time
from lsp_server.model import int4


@pytest.mark.skipif(not int4.kernel_available(), reason="torch without int4 kernels")
def test_bench_load_times_each_stage_of_each_kind_of_start(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--model", str(tiny_model_dir), "--dtype", "int4", "--repeats", "1", "--json"]
    assert load_time.main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    runs = result["runs"]
    assert list(runs) == ["this: cold", "this: warm, packing", "this: warm"]
    for stages in runs.values():
        assert set(load_time.STAGES) | {"ready", "runs"} == set(stages)
        # The loader's functions were found and timed: a renamed one would read 0 here.
        assert stages["weights"] > 0 and stages["int4"] > 0 and stages["imports"] > 0
        assert stages["convert"] == 0  # a model folder: nothing to convert
        assert stages["ready"] >= sum(stages[s] for s in load_time.STAGES) - 0.01
    assert result["load_average"]["max"] >= result["load_average"]["min"] >= 0


def test_bench_load_says_which_load_failed(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="a load in .* failed"):
        load_time.main(["--model", str(tmp_path / "missing"), "--repeats", "0"])
