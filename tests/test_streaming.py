"""Chunked and sharded sampling give the rows and metrics of the unchunked batch."""

import json
import math
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import noisesched as ns
from noisesched import metrics, streaming

H = 0.5 * math.log(4)
D = 300  # XLA on CPU sums 300 coordinates in the same order for any block of >= 16 rows


def setup(name):
    interp = ns.Interpolant(kind="vp", shape="linear", d=D)
    sched = ns.schedules.vp_dilated(d=D)
    model = ns.GaussianMixture.two_modes(d=D) if name == "gm" else ns.CurieWeiss(D, 2.0, H)
    return model, interp, sched


@pytest.mark.parametrize("name", ["gm", "cw"])
@pytest.mark.parametrize("method", ["scan", "diffrax"])
def test_chunks_are_the_rows_of_the_batch(name, method):
    model, interp, sched = setup(name)
    key = jax.random.PRNGKey(3)
    full = ns.sample(model, interp, sched, key, 80, steps=12, method=method)
    chunks = list(streaming.sample_chunks(model, interp, sched, key, 80, steps=12, method=method,
                                          chunk_size=32))
    assert [c.start for c in chunks] == [0, 32, 64]
    assert [c.x.shape[0] for c in chunks] == [32, 32, 16]  # the last one cut
    np.testing.assert_array_equal(np.concatenate([c.x for c in chunks]), full)
    assert all(int(c.num_steps) == 12 for c in chunks)


@pytest.mark.parametrize("name", ["gm", "cw"])
def test_streamed_summary_equals_summary_of_the_batch(name):
    model, interp, sched = setup(name)
    key = jax.random.PRNGKey(5)
    full = ns.sample(model, interp, sched, key, 96, steps=12, method="scan")
    streamed = streaming.sample_summary(model, interp, sched, key, 96, steps=12, method="scan",
                                        chunk_size=32, max_values=5000)
    whole = metrics.summary_from_rows(model, metrics.row_statistics(model, full,
                                                                    max_values=5000))
    assert streamed.metrics == whole
    assert streamed.chunk_size == 32 and streamed.num_steps == 12
    # only O(n) numbers per sample reach the host, plus the strided subset of entries
    assert all(v.shape == (96,) for k, v in streamed.rows.items() if k != "values")
    assert streamed.rows["values"].size <= 5000
    # and summary() on the samples gives the same numbers
    assert metrics.summary(model, full).keys() == whole.keys()


def test_row_statistics_of_blocks_concatenate_to_the_batch():
    model, interp, sched = setup("gm")
    x = ns.sample(model, interp, sched, jax.random.PRNGKey(0), 50, steps=10)
    whole = metrics.row_statistics(model, x, max_values=1000)
    parts = [metrics.row_statistics(model, x[a:b], start=a, total=50, max_values=1000)
             for a, b in [(0, 17), (17, 33), (33, 50)]]  # >= 16 rows each
    joined = metrics.concatenate_rows(parts)
    for key in whole:
        np.testing.assert_array_equal(joined[key], whole[key])
    # the strided residuals are the same entries coordinate_ks pools
    assert metrics.summary_from_rows(model, whole)["coordinate_ks"] == pytest.approx(
        float(metrics.coordinate_ks(model, x, max_values=1000)), abs=1e-6)


def test_summary_from_rows_matches_the_direct_metrics():
    model, interp, sched = setup("gm")
    x = ns.sample(model, interp, sched, jax.random.PRNGKey(1), 64, steps=10)
    s = metrics.summary(model, x)
    assert s["mode_weight"] == float(metrics.mode_weight(model, x))
    assert s["within_mode_var"] == pytest.approx(float(metrics.within_mode_variance(model, x)),
                                                 rel=1e-6)
    cw, interp, sched = setup("cw")
    x = ns.sample(cw, interp, sched, jax.random.PRNGKey(1), 64, steps=10)
    s = metrics.summary(cw, x)
    assert s["mode_weight"] == float(metrics.positive_phase_fraction(cw, x))
    assert s["mean_sq"] == pytest.approx(float(metrics.mean_square(cw, x)), rel=1e-6)
    assert s["magnetization_ks"] == pytest.approx(float(metrics.magnetization_ks(cw, x)),
                                                  abs=1e-6)


def test_automatic_chunks_follow_the_free_memory(monkeypatch):
    model, interp, sched = setup("gm")
    devices = streaming.resolve_devices(None)
    per_row = 4 * D * 4  # four live float32 states per row
    monkeypatch.setattr(streaming, "_device_memory", lambda dev: 4 * 24 * per_row)
    assert streaming.auto_chunk_size(D, jnp.float32, devices) == 24
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]; got 0"):
        streaming.auto_chunk_size(D, jnp.float32, devices, fraction=0)
    key = jax.random.PRNGKey(2)
    auto = streaming.sample_summary(model, interp, sched, key, 60, steps=8)
    assert auto.chunk_size == 24
    one = streaming.sample_summary(model, interp, sched, key, 60, steps=8, chunk_size=60)
    assert auto.metrics == one.metrics


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(chunk_size=-1), r"chunk_size must be an integer >= 0; got -1"),
        (dict(chunk_size=2.5), r"chunk_size must be an integer"),
        (dict(devices=99), r"devices must be an integer in \[0, 1\]; got 99"),
        (dict(devices="gpu"), r"devices must be an int in \[0, 1\]"),
        (dict(observe="overlap"), r"observe is not available chunk by chunk"),
        (dict(max_values=0), r"max_values must be an integer >= 1; got 0"),
    ],
)
def test_bad_streaming_arguments(kwargs, message, unchecked_types):
    model, interp, sched = setup("gm")
    with pytest.raises(ValueError, match=message):
        streaming.sample_summary(model, interp, sched, jax.random.PRNGKey(0), 10, steps=4,
                                 **kwargs)


def test_nan_names_the_sample_step_and_time():
    _, interp, sched = setup("gm")
    # means given as an array are not bounded as the level m of two_modes is: |μ|² overflows
    # float32 from the start (σ = 10^15, so that the spread is one float32 resolves beside them)
    bad = ns.GaussianMixture([0.8, 0.2], np.stack([np.full(D, 1e20), np.full(D, -1e20)]), 1e15)
    message = r"first in sample 0, at step 1 of 4 \(t = 0.25\); try more steps"
    with pytest.raises(FloatingPointError, match=message):
        streaming.sample_summary(bad, interp, sched, jax.random.PRNGKey(0), 10, steps=4)
    with pytest.raises(FloatingPointError, match=r"first in sample 0, at step 1 of 6 "):
        streaming.sample_summary(bad, interp, sched, jax.random.PRNGKey(0), 10, steps=6,
                                 solver="heun", chunk_size=4)


SHARDED = textwrap.dedent(
    """
    import json, math, sys
    import jax
    import noisesched as ns
    from noisesched import streaming
    out = {"devices": jax.device_count()}
    d = 300
    interp = ns.Interpolant("vp", "linear", d)
    sched = ns.schedules.vp_dilated(d)
    for name, model in [("gm", ns.GaussianMixture.two_modes(d)),
                        ("cw", ns.CurieWeiss(d, 2.0, 0.5 * math.log(4)))]:
        for method, span in [("scan", False), ("diffrax", False), ("diffrax", "auto")]:
            key = jax.random.PRNGKey(4)
            options = dict(steps=12, method=method, span=span, chunk_size=64)
            one = streaming.sample_summary(model, interp, sched, key, 150, devices=1, **options)
            four = streaming.sample_summary(model, interp, sched, key, 150, devices=4,
                                            **options)
            x = next(streaming.sample_chunks(model, interp, sched, key, 150, devices=4,
                                             **options)).x
            out[name + "-" + method + ("-span" if span else "")] = {
                "one": one.metrics, "four": four.metrics, "devices": four.devices,
                "rows_equal": all((one.rows[k] == four.rows[k]).all() for k in one.rows),
                "shards": len(x.sharding.device_set),
            }
    json.dump(out, sys.stdout)
    """
)


def test_four_devices_give_the_metrics_of_one():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SHARDED], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["devices"] == 4
    for case in ("gm-scan", "gm-diffrax", "cw-scan", "cw-diffrax", "cw-diffrax-span"):
        r = out[case]
        assert r["devices"] == 4 and r["shards"] == 4, case
        assert r["one"] == r["four"], case
        assert r["rows_equal"], case
    # the mixture's span form (its default): per-row arithmetic on (n, K) arrays is compiled
    # by the shape each device holds, so its samples differ from one device's by float32
    # rounding (a few ulps: 1e-6 relative); the metrics' standard errors are 1e-2
    r = out["gm-diffrax-span"]
    assert r["devices"] == 4 and r["shards"] == 4
    for key, value in r["one"].items():
        assert r["four"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert "rematerialization" not in proc.stderr  # every step stays split over the devices
