"""Bad input to the Python API and the command line: a ValueError (CLI: one line, status 2) that
names the parameter, the allowed range and the value, raised before any heavy work. Config-file
cases are in test_experiments.py and test_fit_cli.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import noisesched as ns
from noisesched.cli import main

D = 16
KEY = jax.random.PRNGKey(0)

# wrongly typed values are passed on purpose: see the library's own errors, not the test hook's
pytestmark = pytest.mark.usefixtures("unchecked_types")


def _setup():
    model = ns.GaussianMixture.two_modes(d=D)
    interp = ns.Interpolant(kind="vp", shape="linear", d=D)
    return model, interp, ns.schedules.vp_dilated(d=D, k=2.0)


def _sample(**kwargs):
    model, interp, sched = _setup()
    args = {"key": KEY, "n": 4, **kwargs}
    return ns.sample(model, interp, sched, args.pop("key"), args.pop("n"), **args)


def _summary(**kwargs):
    model, interp, sched = _setup()
    return ns.sample_summary(model, interp, sched, KEY, 4, **kwargs)


API_CASES = [
    ("interpolant kind", lambda: ns.Interpolant(kind="vpp", shape="linear", d=10),
     "kind must be one of 'vp', 've'; got 'vpp' (did you mean 'vp'?)"),
    ("interpolant shape", lambda: ns.Interpolant(kind="vp", shape="cos", d=10),
     "shape must be one of 'linear', 'trig'; got 'cos'"),
    ("interpolant d = 0", lambda: ns.Interpolant(kind="vp", shape="linear", d=0),
     "d must be an integer >= 1; got 0"),
    ("interpolant d = 10.5", lambda: ns.Interpolant(kind="vp", shape="linear", d=10.5),
     "d must be an integer >= 1; got 10.5"),
    ("k = √d", lambda: ns.schedules.vp_dilated(d=16, k=4.0), "k must be in (0, 4); got 4.0"),
    ("k < 0", lambda: ns.schedules.ve_dilated(d=100, k=-1.0), "k must be in (0, 10); got -1.0"),
    ("k = nan", lambda: ns.schedules.vp_dilated(d=100, k=float("nan")),
     "k must be a real number; got nan"),
    ("schedule name", lambda: ns.schedules.make("vp_dilate", _setup()[1]),
     "schedule must be one of 'constant', 'vp_dilated', 've_dilated', 've_dilated_trig', "
     "'cosine', 'karras', 'log_snr_uniform', 'arctan_levels'; got 'vp_dilate' (did you mean "
     "'vp_dilated'?)"),
    ("schedule option", lambda: ns.schedules.make("cosine", _setup()[1], rho=7.0),
     "schedule option 'rho' is not used by schedule 'cosine'; allowed: offset"),
    ("karras sigma_max < sigma_min",
     lambda: ns.schedules.karras(_setup()[1], sigma_min=1.0, sigma_max=0.5),
     "sigma_max must be in (1, inf); got 0.5"),
    ("cosine offset", lambda: ns.schedules.cosine(_setup()[1], offset=1.5),
     "offset must be in [0, 1); got 1.5"),
    ("mixture p", lambda: ns.GaussianMixture.two_modes(d=10, p=1.2),
     "p must be in (0, 1); got 1.2"),
    ("mixture sigma", lambda: ns.GaussianMixture.two_modes(d=10, sigma=0.0),
     "sigma must be in (0, 1e+15]; got 0.0"),
    ("mixture weights sum", lambda: ns.GaussianMixture(np.array([0.5, 0.6]), np.ones((2, D)), 0.5),
     "weights must sum to 1; got sum 1.1"),
    ("mixture shapes", lambda: ns.GaussianMixture(np.array([0.5, 0.3, 0.2]), np.ones((2, D)), 0.5),
     "means must have shape (K, d) = (3, d) to match weights; got (2, 16)"),
    ("mixture means nan", lambda: ns.GaussianMixture(np.array([0.5, 0.5]),
                                                     np.full((2, D), np.nan), 0.5),
     "means must be finite; got nan or inf entries"),
    ("curie-weiss beta", lambda: ns.CurieWeiss(d=10, beta=-2.0, h=0.1),
     "beta must be in (0, inf); got -2.0"),
    ("curie-weiss h", lambda: ns.CurieWeiss(d=10, beta=2.0, h=float("nan")),
     "h must be a real number; got nan"),
    ("key", lambda: _sample(key=0),
     "key must be one PRNG key, jax.random.key(seed) or jax.random.PRNGKey(seed); got 0"),
    ("batch of keys", lambda: _sample(key=jax.random.split(KEY, 3)),
     "key must be one PRNG key, jax.random.key(seed) or jax.random.PRNGKey(seed); got an array "
     "of shape (3, 2) and dtype uint32"),
    ("n = 0", lambda: _sample(n=0), "n must be an integer >= 1; got 0"),
    ("steps = 10.0", lambda: _sample(steps=10.0), "steps must be an integer >= 1; got 10.0"),
    ("solver", lambda: _sample(solver="rk4"),
     "solver must be one of 'euler', 'heun', 'midpoint', 'ralston', 'bosh3', 'tsit5', 'dopri5', "
     "'sigma_euler', 'dpmpp_2m'; got 'rk4'"),
    ("scan solver", lambda: _sample(method="scan", solver="tsit5"),
     "solver (method='scan') must be one of 'euler', 'heun', 'sigma_euler', 'dpmpp_2m'; got "
     "'tsit5'"),
    ("adaptive solver", lambda: _sample(adaptive=True, solver="euler"),
     "solver (adaptive) must be one of 'bosh3', 'tsit5', 'dopri5'; got 'euler'"),
    ("rtol", lambda: _sample(adaptive=True, solver="tsit5", rtol=0.0),
     "rtol must be in (0, inf); got 0.0"),
    ("interpolant of another d", lambda: ns.sample(
        _setup()[0], ns.Interpolant(kind="vp", shape="linear", d=D + 1),
        ns.schedules.constant(), KEY, 4),
     "interpolant d = 17 must equal the model's d = 16"),
    ("x0 shape", lambda: ns.solve(*_setup(), jnp.ones((4, 3))),
     "x0 must have shape (n, d) = (n, 16); got (4, 3)"),
    ("x0 integer", lambda: ns.solve(*_setup(), jnp.ones((4, D), int)),
     "x0 must have a floating dtype (float32 or float64); got int32"),
    ("metrics shape", lambda: ns.metrics.mode_weight(_setup()[0], jnp.ones((4, 3))),
     "x must have shape (n, d) = (n, 16); got (4, 3)"),
    ("chunk_size", lambda: _summary(chunk_size=-1), "chunk_size must be an integer >= 0; got -1"),
    ("devices", lambda: _summary(devices=99), "devices must be an integer in [0, 1]; got 99"),
    ("observe in chunks", lambda: _summary(observe="overlap"),
     "observe is not available chunk by chunk"),
    ("max_values", lambda: _summary(max_values=0), "max_values must be an integer >= 1; got 0"),
    ("store", lambda: _summary(store="out/.resume"),
     "store must be a noisesched.ChunkStore or None; got 'out/.resume'"),
    ("check_finite", lambda: _sample(check_finite="yes"),
     "check_finite must be True or False; got 'yes'"),
]


@pytest.mark.parametrize("thunk,message", [c[1:] for c in API_CASES],
                         ids=[c[0] for c in API_CASES])
def test_api_errors_name_the_parameter_and_range(thunk, message):
    with pytest.raises(ValueError) as err:
        thunk()
    assert str(err.value) == message or str(err.value).startswith(message)


CLI_CASES = [
    (["demo", "--k", "50", "--d", "100"], 2, "error: k must be in (0, 10); got 50.0"),
    (["demo", "--d", "abc"], 2, "error: argument --d: invalid int value: 'abc'"),
    (["frobnicate"], 2, "error: argument command: invalid choice: 'frobnicate'"),
    (["run"], 2, "error: run takes one config path (CONFIG or --config CONFIG); got none"),
    (["run", "--set", "sample.n=10", "CONFIG"], 2,  # (the path follows --set: named next)
     "error: run takes one config path (CONFIG or --config CONFIG); got none ('"),
    (["run", "CONFIG", "--set", "solver.stpes=3"], 2,
     "error: unknown solver key 'stpes' (did you mean 'steps'?)"),
    (["run", "CONFIG", "--set", "stpes=3"], 2,
     "error: unknown config key 'stpes' (did you mean 'solver.steps'?)"),
    (["run", "CONFIG", "--set", "steps=3"], 2,
     "error: unknown config key 'steps' (now solver.steps)"),
    (["run", "CONFIG", "--set", "model.d=100", "schedule.k=20"], 2,
     "error: schedule.k must be in (0, 10); got 20.0"),
    (["run", "CONFIG", "--set", "sample.n=0"], 2, "error: sample.n must be an integer >= 1; got 0"),
    (["run", "CONFIG", "--set", "sample.dtype=float16"], 2,
     "error: sample.dtype must be one of 'float32', 'float64'; got 'float16'"),
    (["run", "CONFIG", "--set", "schedule.name=@nowhere.json"], 2,
     "error: schedule file 'nowhere.json' does not exist (schedule.name = '@nowhere.json')"),
    (["run", "CONFIG", "--set", "model.name=gm_random"], 2,
     "error: model.weights is required for model 'gm_random'"),
    (["run", "CONFIG", "--set", "model.name=1", "interpolant.kind=1"], 2,
     "error: model.name must be a string; got 1"),
    (["run", "CONFIG", "--set", "schedule.name=edm", "schedule.sigma_max=1e-9"], 2,
     "error: schedule.sigma_max must be greater than sigma_min = 0.002"),
    (["run", "CONFIG", "--set", "model.name=.relative:Model"], 2,
     "error: model.name must be a registry name, 'learned:PATH' or 'package.module:Name'; got "
     "'.relative:Model'"),
    (["run", "CONFIG", "--set", "solver.adaptive=true", "solver.name=tsit5",
      "--set", "solver.max_steps=2"], 1,
     "error: the adaptive solve took max_steps = 2 steps without reaching t = 1; raise max_steps, "
     "loosen rtol = 0.0001 / atol = 0.0001, or use the fixed grid"),
    (["run", "CONFIG", "--set", "model.m=1e20"], 2,
     "error: model.m must be in (0, 1e+15]; got 1e+20"),
    (["run", "/dev/zero"], 2,
     "error: config file '/dev/zero' is not a regular file (a device or a pipe); give a file"),
    (["run", "CONFIG", "--set", "schedule.name=@/dev/zero"], 2,
     "error: schedule file '/dev/zero' is not a regular file (a device or a pipe); give a file "
     "(schedule.name = '@/dev/zero')"),
    (["scaling", "SCALING"], 2, "error: dims must list at least two different dimensions"),
    (["fit", "CONFIG", "--set", "fit.iterations=0"], 2,
     "error: fit.iterations must be an integer >= 1; got 0"),
    (["fit", "CONFIG", "--set", "fit.famly=sigmoid_sum"], 2,
     "error: unknown fit key 'famly' (did you mean 'family'?)"),
]


@pytest.mark.parametrize("args,status,message", CLI_CASES,
                         ids=[" ".join(c[0][:1] + c[0][2:]) for c in CLI_CASES])
def test_cli_errors_are_one_line(tmp_path, capsys, args, status, message):
    config = tmp_path / "c.toml"
    config.write_text("name = 'c'\n[model]\nd = 64\n[sample]\nn = 8\n[solver]\nsteps = 4\n"
                      "[output]\nfigures = false\n")
    scaling = tmp_path / "s.toml"
    scaling.write_text("dims = [100, 100]\n")
    args = [{"CONFIG": str(config), "SCALING": str(scaling)}.get(a, a) for a in args]
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(main([*args, "--out", str(tmp_path / "out")] if len(args) > 1
                              else args))
    assert exit_info.value.code == status
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"noisesched: {message}"), err
    assert "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_mismatched_schedule_warns_once_in_the_api():
    interp = ns.Interpolant(kind="vp", shape="linear", d=D)
    with pytest.warns(ns.schedules.ScheduleKindWarning, match="made for kind = 've'"):
        ns.schedules.make("ve_dilated", interp)


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="p must be in"):
        main(["--debug", "demo", "--p", "2", "--out", str(tmp_path / "o")])
