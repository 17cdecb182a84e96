"""The benchmark scripts run, at tiny sizes, and their tables hold what they measured."""

import sys
from pathlib import Path

import jax.numpy as jnp
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import perf  # noqa: E402
import precision  # noqa: E402


@pytest.mark.slow  # every solve path of the benchmark suite, compiled
def test_perf_suite_measures_every_path(monkeypatch):
    monkeypatch.setitem(perf.PRESETS, "tiny", {"sizes": [(500, 32)], "steps": 6, "repeats": 1,
                                                "naive_max": 10**5,
                                                "grad": {"d": 200, "n": 16, "steps": [4]}})
    result = perf.run_suite("tiny", jnp.dtype("float32"), log=lambda *_: None)
    assert [r["model"] for r in result["solves"]] == ["gm", "cw"]
    for row in result["solves"]:
        for path in ("fused", "diffrax", "naive"):
            assert row[path]["seconds"] > 0
        assert row["fused"]["finite"] and row["diffrax"]["finite"]
        assert row["diffrax_fused_max_abs_diff"] < 1e-4  # the same solve, two ways
        assert row["fused"]["peak_bytes"] >= 2 * 500 * 32 * 4  # at least X_0 and X_1
        assert row["floor_seconds"] == pytest.approx(6 * row["copy_pass_seconds"])
    assert {g["checkpointing"] for g in result["gradients"]} == {"sqrt(N) blocks",
                                                                 "every state"}
    table = perf.markdown(result)
    assert table.count("\n| gm |") == 1 and table.count("\n| cw |") == 1


def test_precision_compares_the_same_prior_noise():
    row = precision.compare("gm", "vp", "vp_dilated", d=400, n=32, steps=8, chunk=16)
    assert row["samples_changing_mode"] == 0
    assert row["max_abs_state_difference"] < 1e-4
    assert row["float32"]["mode_weight"] == row["float64"]["mode_weight"]
    assert abs(row["float32"]["within_mode_var"] - row["float64"]["within_mode_var"]) < 1e-5
    assert "mode_weight" in row["exact"]
    assert "| gm | vp, vp_dilated |" in precision.markdown([row])
