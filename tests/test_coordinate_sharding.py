"""One solve's coordinate axis split over devices (``shard="coordinates"``) gives the unsharded
solve: the same prior draws, the same final states up to the float rounding of sums over
coordinates, the same metrics; and no device holds a whole row of the state.

Everything runs in one subprocess with four host devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=4``); the tests read its report."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import noisesched as ns
from noisesched import metrics

D, N = 400, 32

SCRIPT = textwrap.dedent(
    f"""
    import json, math, re, sys
    import jax, jax.numpy as jnp, numpy as np
    import noisesched as ns
    from noisesched import metrics, streaming
    from noisesched.sampling import sample_prior

    d, n = {D}, {N}
    out = {{"devices": jax.device_count(),
            "partitionable": bool(jax.config.jax_threefry_partitionable)}}
    interp = ns.Interpolant("vp", "linear", d)
    sched = ns.schedules.vp_dilated(d)
    key = jax.random.PRNGKey(7)
    models = {{"gm": ns.GaussianMixture.two_modes(d),
               "gm4": ns.GaussianMixture.random_means(d, [0.4, 0.3, 0.2, 0.1], seed=1),
               "cw": ns.CurieWeiss(d, 2.0, 0.5 * math.log(4))}}

    # the prior drawn on the devices, each its own columns, against the unsharded draw
    split = streaming.coordinate_sharding(jax.devices())
    draw = jax.jit(lambda k: jax.lax.with_sharding_constraint(
        sample_prior(interp, k, n, jnp.float32), split))
    x0 = draw(key)
    out["prior_equal"] = bool((np.asarray(x0) == np.asarray(sample_prior(interp, key, n))).all())
    out["prior_shards"] = [list(s.data.shape) for s in x0.addressable_shards]

    # final states: sharded over 4 devices against the unsharded solve
    unsharded = {{}}
    for name, solver in [("gm", "euler"), ("gm", "heun"), ("gm4", "euler"), ("cw", "euler")]:
        model = models[name]
        one = ns.sample(model, interp, sched, key, n, steps=8, solver=solver, method="scan")
        four = ns.sample(model, interp, sched, key, n, steps=8, solver=solver, method="scan",
                         devices=4, shard="coordinates")
        unsharded[name, solver] = one
        np.save(sys.argv[1] + f"/{{name}}-{{solver}}-one.npy", np.asarray(one))
        np.save(sys.argv[1] + f"/{{name}}-{{solver}}-four.npy", np.asarray(four))
        out[f"{{name}}-{{solver}}"] = {{
            "spec": str(four.sharding.spec),
            "shards": [list(s.data.shape) for s in four.addressable_shards]}}

    # the metrics of a batch of two chunks (the last one padded), streamed with the
    # coordinates split, against those of the unsharded rows (the programs above serve both)
    total = 2 * n - 5
    for name in ["gm", "cw"]:
        model = models[name]
        second = ns.solve(model, interp, sched,
                          sample_prior(interp, key, n, start=n, schedule=sched),
                          steps=8, method="scan").x
        rows = metrics.concatenate_rows([
            metrics.row_statistics(model, unsharded[name, "euler"], total=total,
                                   max_values=4000),
            metrics.row_statistics(model, second, start=n, total=total, max_values=4000)])
        four = streaming.sample_summary(model, interp, sched, key, total, steps=8,
                                        method="scan", chunk_size=n, max_values=4000,
                                        devices=4, shard="coordinates")
        out["summary-" + name] = {{"one": metrics.summary_from_rows(model, rows),
                                   "four": four.metrics, "shard": four.shard,
                                   "devices": four.devices, "chunk_size": four.chunk_size}}

    # the compiled program: all-reduces of the sums, no gather, per-device sizes
    model = models["gm"]
    opts = dict(steps=8, solver="euler", method="scan")
    for label, devs in [("one", jax.devices()[:1]), ("four", jax.devices())]:
        compiled = streaming._solve_rows.lower(
            model, interp, sched, key, jnp.asarray(0), n, jnp.dtype("float32"),
            streaming.coordinate_sharding(devs), "coordinates", opts).compile().compiled
        text, mem = compiled.as_text(), compiled.memory_analysis()
        out["hlo-" + label] = {{
            "all_reduce": text.count("all-reduce("), "all_gather": text.count("all-gather("),
            "full_rows": len(re.findall(rf"\\[{{n}},{{d}}\\]", text)),
            "quarter_rows": len(re.findall(rf"\\[{{n}},{{d // 4}}\\]", text)),
            "argument": mem.argument_size_in_bytes, "output": mem.output_size_in_bytes,
            "temp": mem.temp_size_in_bytes}}

    # d not divisible by the number of devices
    odd = ns.CurieWeiss(402, 2.0)
    try:
        ns.sample(odd, ns.Interpolant("vp", "linear", 402), ns.schedules.vp_dilated(402), key,
                  4, steps=2, devices=4, shard="coordinates")
        out["odd_error"] = None
    except ValueError as err:
        out["odd_error"] = str(err)
    json.dump(out, sys.stdout)
    """
)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("coordinates")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(folder)], capture_output=True,
                          text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["devices"] == 4
    out["folder"] = folder
    return out


def test_prior_is_drawn_on_the_devices_and_equals_the_unsharded_draw(report):
    assert report["partitionable"]  # each device draws only the bits of its own columns
    assert report["prior_equal"]
    assert report["prior_shards"] == [[N, D // 4]] * 4


@pytest.mark.parametrize("case", ["gm-euler", "gm-heun", "gm4-euler", "cw-euler"])
def test_coordinate_sharded_solve_equals_the_unsharded_solve(report, case):
    assert report[case]["spec"] == "P(None, 'coordinates')"
    assert report[case]["shards"] == [[N, D // 4]] * 4
    one = np.load(report["folder"] / f"{case}-one.npy")
    four = np.load(report["folder"] / f"{case}-four.npy")
    # each sum over the d coordinates is now a sum of four partial sums: float32 rounding of
    # a few ulps per sum, carried through 8 steps (seen: at most 4e-6 of the states' scale)
    np.testing.assert_allclose(four, one, rtol=1e-5, atol=1e-5 * np.abs(one).max())
    # every sample ends in the same mode (nearest mean) or phase as its unsharded twin
    name = case.split("-")[0]
    if name == "cw":
        np.testing.assert_array_equal(np.sign(metrics.magnetization(four)),
                                      np.sign(metrics.magnetization(one)))
    else:
        model = (ns.GaussianMixture.two_modes(D) if name == "gm"
                 else ns.GaussianMixture.random_means(D, [0.4, 0.3, 0.2, 0.1], seed=1))
        np.testing.assert_array_equal(metrics.assign_modes(model, four),
                                      metrics.assign_modes(model, one))


@pytest.mark.parametrize("name", ["gm", "cw"])
def test_streamed_metrics_of_a_coordinate_sharded_batch(report, name):
    r = report["summary-" + name]
    assert (r["shard"], r["devices"], r["chunk_size"]) == ("coordinates", 4, N)
    assert r["one"].keys() == r["four"].keys()
    for key, value in r["one"].items():
        assert r["four"][key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
    assert r["four"]["mode_weight"] == r["one"]["mode_weight"]


def test_no_device_holds_a_whole_row(report):
    one, four = report["hlo-one"], report["hlo-four"]
    # the sums over coordinates become all-reduces; nothing is gathered
    assert four["all_reduce"] >= 1 and four["all_gather"] == 0
    assert one["all_reduce"] == 0
    # every (n, d)-sized array of the program is a quarter of the columns on each device
    assert one["full_rows"] > 0 and one["quarter_rows"] == 0
    assert four["full_rows"] == 0 and four["quarter_rows"] > 0
    for size in ("output", "temp"):
        assert four[size] <= 0.3 * one[size], (size, four[size], one[size])
    # the two-mode means are ConstantMeans: the program's arguments hold nothing of length d
    assert four["argument"] == one["argument"] < 4 * D


def test_d_not_divisible_by_the_devices_is_refused(report):
    assert report["odd_error"] == (
        "shard='coordinates' needs d divisible by the number of devices; got d = 402 over 4 "
        "devices: pass devices = one of [1, 2, 3] (divisors of d), or shard='rows'")


@pytest.mark.parametrize("entry", ["sample", "sample_summary"])
def test_bad_shard_names_the_parameter_and_its_values(entry, unchecked_types):
    model = ns.GaussianMixture.two_modes(16)
    interp, sched = ns.Interpolant("vp", "linear", 16), ns.schedules.vp_dilated(16)
    call = ns.sample if entry == "sample" else ns.sample_summary
    with pytest.raises(ValueError, match=r"shard must be one of 'rows', 'coordinates'; "
                                         r"got 'columns'"):
        call(model, interp, sched, jax.random.PRNGKey(0), 4, steps=2, shard="columns")
