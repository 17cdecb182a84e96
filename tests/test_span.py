"""Solves in span form (``noisesched._solve.span``): the mixture's state carried as its
coefficients in span{x_0, μ_1 … μ_K}, against the stepped (n, d) solve (an independent
implementation of the same steps) in float64, float32, under gradients and with a final Euler
step; where the form applies and where it is refused."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import noisesched as ns
from noisesched._solve.span import has_span_form

D = 120


def _mixtures():
    return {"two modes": ns.GaussianMixture.two_modes(d=D, p=0.7),
            "three seeded": ns.GaussianMixture.random_means(d=D, weights=[0.5, 0.3, 0.2]),
            "dense": ns.GaussianMixture([0.6, 0.4], np.stack([np.linspace(-1, 1, D),
                                                             np.cos(np.arange(D))]), 0.3)}


@pytest.mark.parametrize("name", list(_mixtures()))
@pytest.mark.parametrize("solver, steps, kind", [("euler", 10, "vp"), ("heun", 7, "vp"),
                                                 ("heun", 10, "ve"), ("euler", 5, "ve")])
def test_the_span_form_gives_the_stepped_numbers_in_float64(x64, name, solver, steps, kind):
    model = _mixtures()[name]
    interp = ns.Interpolant(kind, "linear", D)
    schedule = ns.schedules.make(f"{kind}_dilated", interp, k=2.0)  # a kink at t = ½
    x0 = ns.sample_prior(interp, jax.random.PRNGKey(3), 32, jnp.float64)
    span = ns.solve(model, interp, schedule, x0, steps=steps, solver=solver).x  # the default
    for method in ("diffrax", "scan"):
        stepped = ns.solve(model, interp, schedule, x0, steps=steps, solver=solver,
                           method=method, span=False).x
        np.testing.assert_allclose(span, stepped, rtol=1e-12, atol=1e-12)
    forced = ns.solve(model, interp, schedule, x0, steps=steps, solver=solver, method="scan",
                      span=True).x
    np.testing.assert_array_equal(forced, span)


def test_the_span_form_in_float32_and_with_a_final_euler_step():
    model = ns.GaussianMixture.two_modes(d=D)
    interp = ns.Interpolant("vp", "trig", D)
    schedule = ns.schedules.vp_dilated(D, 2.0)
    x0 = ns.sample_prior(interp, jax.random.PRNGKey(0), 64, jnp.float32)
    for final_step in ("solver", "euler"):
        span = ns.solve(model, interp, schedule, x0, steps=12, solver="heun",
                        final_step=final_step).x
        stepped = ns.solve(model, interp, schedule, x0, steps=12, solver="heun",
                           final_step=final_step, span=False).x
        assert span.dtype == jnp.float32
        np.testing.assert_allclose(span, stepped, rtol=2e-5, atol=2e-5)


def test_gradients_through_the_span_form(x64):
    """The gradient of a feature of the samples in the schedule's parameter, in span form,
    against the stepped solve's and against central differences."""
    model = ns.GaussianMixture.two_modes(d=D, p=0.7)
    interp = ns.Interpolant("vp", "linear", D)
    x0 = ns.sample_prior(interp, jax.random.PRNGKey(1), 16, jnp.float64)

    def feature(k, span):
        x = ns.solve(model, interp, ns.schedules.vp_dilated(D, k), x0, steps=8, span=span).x
        return jnp.mean(jnp.tanh(jnp.mean(x, axis=1))) + jnp.mean(x**2)

    k = 2.0
    grad = jax.grad(feature)(k, True)
    assert grad == pytest.approx(float(jax.grad(feature)(k, False)), rel=1e-10)
    h = 1e-5
    central = (feature(k + h, True) - feature(k - h, True)) / (2 * h)
    assert grad == pytest.approx(float(central), rel=1e-6)


def test_where_the_span_form_applies():
    gm = ns.GaussianMixture.two_modes(d=D)
    cw = ns.CurieWeiss(d=D, beta=1.5)
    x = jnp.ones((2, D))
    assert has_span_form(gm, x) and not has_span_form(cw, x)
    interp = ns.Interpolant("vp", "linear", D)
    schedule = ns.schedules.vp_dilated(D, 2.0)
    x0 = ns.sample_prior(interp, jax.random.PRNGKey(0), 4)
    refused = [dict(model=cw), dict(adaptive=True, solver="tsit5"), dict(observe="overlap"),
               dict(solver="sigma_euler", method="scan"), dict(method="pallas", row_block=4)]
    for case in refused:
        options = dict(model=gm, span=True) | case
        model = options.pop("model")
        with pytest.raises(ValueError, match="span=True needs a fixed-grid Euler or Heun solve"):
            ns.solve(model, interp, schedule, x0, steps=4, **options)
    with pytest.raises(ValueError, match="span must be 'auto', True or False; got 'yes'"):
        ns.solve(gm, interp, schedule, x0, steps=4, span="yes")
    # "auto" steps where the form does not apply, and on a loop asked for by name, with the
    # numbers of the stepped solve
    for model, options in ((cw, {}), (gm, dict(observe="overlap")),
                           (gm, dict(adaptive=True, solver="tsit5")), (gm, dict(method="scan")),
                           (gm, dict(row_block=2))):
        np.testing.assert_array_equal(
            ns.solve(model, interp, schedule, x0, steps=4, **options).x,
            ns.solve(model, interp, schedule, x0, steps=4, span=False, **options).x)


def test_a_chunk_of_a_stream_is_the_rows_of_the_batch_in_span_form():
    """One device, chunks of at least 16 rows: the same bits as the whole batch (the prior is
    drawn inside the chunk's program; the final state is made from it as an array of its
    own)."""
    model = ns.GaussianMixture.two_modes(d=300)
    interp = ns.Interpolant("vp", "linear", 300)
    schedule = ns.schedules.vp_dilated(300)
    key = jax.random.PRNGKey(3)
    full = ns.sample(model, interp, schedule, key, 80, steps=12)
    chunks = list(ns.streaming.sample_chunks(model, interp, schedule, key, 80, steps=12,
                                             chunk_size=32))
    np.testing.assert_array_equal(np.concatenate([c.x for c in chunks]), full)


def test_the_config_key_takes_the_api_values(tmp_path):
    """[solver] span is solve's span: "auto" (the default), true (asked for: refused where it
    does not apply) or false."""
    from noisesched.experiments import config as cfg

    path = tmp_path / "c.toml"
    path.write_text("[model]\nd = 20\n[solver]\nspan = false\n")
    assert cfg.load(path).solver.options()["span"] is False
    assert cfg.load(path, ["solver.span=true"]).solver.options()["span"] is True
    assert cfg.load(path, ["solver.span=auto"]).solver.options()["span"] == "auto"
    assert cfg.load(path, ['solver.span="auto"']).solver.options()["span"] == "auto"
    path.write_text("[model]\nd = 20\n")
    assert cfg.load(path).solver.options()["span"] == "auto"
    for bad in ("1", "yes", "[true]"):
        with pytest.raises(ValueError, match="solver.span must be 'auto', true or false"):
            cfg.load(path, [f"solver.span={bad}"])


def test_span_true_in_a_config_is_refused_for_a_model_without_a_span_form(tmp_path, capsys):
    """Curie–Weiss has no span form: asking for it by name ends in one line and status 2."""
    path = tmp_path / "c.toml"
    path.write_text('[model]\nname = "cw"\nd = 20\nbeta = 1.2\n[sample]\nn = 8\n'
                    "[solver]\nsteps = 4\nspan = true\n")
    from noisesched.cli import main

    code = main(["run", str(path), "--set", "output.figures=false", "--out",
                 str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("noisesched: error: solver.span = true needs a fixed-grid Euler or "
                          "Heun solve") and "here model 'cw'" in err and "\n" not in err.strip()
    # fit and compare read the same config: refused before any work too (fit ran it silently)
    fit = tmp_path / "f.toml"
    fit.write_text(path.read_text() + '[fit]\nfamily = "piecewise_linear"\npieces = 4\n'
                   "iterations = 2\n")
    assert main(["fit", str(fit), "--out", str(tmp_path / "o")]) == 2
    assert "solver.span = true needs" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert not (tmp_path / "o").exists()
