"""Schedule cards and the files samplers read: round trips, a σ-space Euler sampler written here
in numpy on the levels read back from the files, the conventions of each exporter, bad inputs,
and ``noisesched export``."""

import csv
import json
import re

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import result_files

import noisesched as ns
from noisesched import cards
from noisesched.cli import main
from noisesched.learning.export import schedule_arrays


def builtin_card(kind="vp", shape="linear", d=16, steps=6, name=None, **options):
    interp = ns.Interpolant(kind, shape, d)
    name = name or f"{kind}_dilated"
    schedule = ns.schedules.make(name, interp, **options)
    return cards.make_card(schedule, interp, steps, solver="sigma_euler",
                           source={"type": "schedule", "name": name, "options": options})


def method_card(kind="vp", shape="linear", d=8, steps=6, name="edm", **options):
    interp = ns.Interpolant(kind, shape, d)
    schedule = ns.methods.make(name, None, interp, steps, **options)
    return cards.make_card(schedule, interp, steps, solver="sigma_euler",
                           source={"type": "method", "name": name, "options": options})


# ----------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("make", [
    lambda: builtin_card("vp", "linear"),
    lambda: builtin_card("ve", "trig", d=50, name="karras"),
    lambda: method_card("ve", "linear", d=20, name="log_snr", sigma_max=30.0),
    lambda: method_card("vp", "trig", name="arctan", sigma_max=float("inf")),
])
def test_card_round_trips_through_its_file_and_its_schedule(make, tmp_path, x64):
    card = make()
    path = cards.save_card(card, tmp_path / "card.json")
    back = cards.load_card(path, d=card.d)
    assert back == card  # every number read back bit for bit, ∞ included
    # the KnotSchedule through the card's levels has the same levels on the grid
    again = schedule_arrays(back.schedule(), back.interpolant(), back.steps)
    np.testing.assert_allclose(again["sigma"], card.sigmas, rtol=1e-12, atol=0)
    np.testing.assert_allclose(again["tau"], card.tau, rtol=1e-12, atol=1e-15)
    data = json.loads(path.read_text())
    assert (data["format"], data["version"]) == ("noisesched-schedule-card", 1)
    assert data["noisesched_version"] == ns.__version__
    assert len(data["sigmas"]) == card.steps + 1 and data["sigmas"][-1] == 0.0
    assert data["sigmas_no_zero"] == data["sigmas"][:-1]
    assert data["infinite_start"] is card.infinite_start
    assert data["log_snr"][-1] is None  # λ_N = +∞
    if card.infinite_start:
        assert data["sigmas"][0] is None and data["log_snr"][0] is None
        assert data["tau"][0] == 0.0
    else:
        assert data["sigmas"][0] > data["sigmas"][1]
    lam = np.asarray(card.log_snr)
    np.testing.assert_allclose(lam[1:-1], -2 * np.log(card.sigmas[1:-1]), rtol=1e-14)


def test_card_of_a_method_keeps_its_levels(tmp_path, x64):
    """The method's own list (EDM, σ_max = 80, σ_min = 0.002) is the card's."""
    i = np.arange(6)
    levels = (80 ** (1 / 7) + i / 5 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    card = method_card("ve", "trig", d=16, steps=6)
    np.testing.assert_allclose(card.sigmas, np.r_[levels, 0.0], rtol=1e-12)
    np.testing.assert_allclose(card.sigmas_no_zero, levels, rtol=1e-12)
    assert not card.infinite_start and card.sigma_max is None


# ----------------------------------------------------------------------------- a numpy sampler
def two_mode_denoiser(y, sigma, mu, p, s):
    """D(y; σ) = E[x1 | x1 + σ z = y] for weights (p, 1 − p) on N(±μ, s² I), numpy float64."""
    if np.isinf(sigma):
        return np.broadcast_to((2 * p - 1) * mu, y.shape)
    v = s**2 + sigma**2
    h = 0.5 * np.log(p / (1 - p))
    return (s**2 / v) * y + (sigma**2 / v) * np.tanh(h + y @ mu / v)[:, None] * mu


def sigma_euler(sigmas, z, denoise):
    """y ← y + (σ_{i+1} − σ_i)(y − D(y; σ_i))/σ_i from y_0 = σ_0 z; from σ_0 = ∞ the first step
    is its limit y_1 = σ_1 z + D(·; ∞) (spec §7). Returns y_1 … y_N."""
    ys = []
    if np.isinf(sigmas[0]):
        y = sigmas[1] * z + denoise(z, np.inf)
        ys.append(y)
        start = 1
    else:
        y = sigmas[0] * z
        start = 0
    for i in range(start, len(sigmas) - 1):
        y = y + (sigmas[i + 1] - sigmas[i]) * (y - denoise(y, sigmas[i])) / sigmas[i]
        ys.append(y)
    return np.stack(ys)


def read_levels(path):
    """A list of levels from any of the files, nulls read as the card's encoding says."""
    if path.suffix == ".npy":
        return np.load(path)
    data = json.loads(path.read_text())
    if isinstance(data, dict):
        data = data["sigmas"]
    return np.array([np.inf if v is None else v for v in data], np.float64)


@pytest.mark.parametrize("kind,shape,start", [("vp", "linear", "finite"),
                                              ("ve", "trig", "pure_noise")])
def test_numpy_sigma_euler_on_the_exported_levels_reproduces_solve(kind, shape, start, tmp_path,
                                                                   x64):
    """The levels read back from the card file drive a σ-space Euler sampler written here, with
    the exact two-mode denoiser; x_i = β_i y_i reproduces ``noisesched.solve(...,
    solver="sigma_euler")`` with the schedule the card was made from, at every grid point."""
    d, steps, n, p, m, s = 8, 7, 16, 0.8, 1.0, 0.5
    interp = ns.Interpolant(kind, shape, d)
    if start == "finite":  # EDM's list from σ_max = 30: y_0 = 30 z
        schedule = ns.methods.make("edm", None, interp, steps, sigma_max=30.0)
    else:  # a dilated schedule from pure noise (σ_0 = ∞)
        schedule = ns.schedules.make(f"{kind}_dilated", interp, k=2.0)
    card = cards.make_card(schedule, interp, steps, solver="sigma_euler", source={})
    folder = tmp_path / "out"
    if start == "finite":
        paths = cards.export_card(card, folder)
        # every sampler file holds the card's list, with or without the trailing zero
        sigmas = read_levels(paths["card"])
        for name in ("diffusers_euler", "k_diffusion", "comfyui"):
            np.testing.assert_array_equal(read_levels(paths[name]), sigmas)
        np.testing.assert_array_equal(np.r_[read_levels(paths["diffusers"]), 0.0], sigmas)
    else:
        sigmas = read_levels(cards.save_card(card, folder / "card.json"))
    assert np.isinf(sigmas[0]) == (start == "pure_noise") and sigmas[-1] == 0.0
    beta = np.asarray(json.loads((folder / "card.json").read_text())["beta"])
    alpha0 = json.loads((folder / "card.json").read_text())["alpha"][0]

    model = ns.GaussianMixture.two_modes(d=d, p=p, m=m, sigma=s)
    mu = np.full(d, m)
    z = np.random.default_rng(1).normal(size=(n, d))
    ys = sigma_euler(sigmas, z, lambda y, sig: two_mode_denoiser(y, sig, mu, p, s))

    x0 = jnp.asarray(alpha0 * z)  # x_0 = β_0 y_0 = α_0 z (= α0 z from pure noise)
    sol = ns.solve(model, interp, schedule, x0, steps=steps, solver="sigma_euler",
                   observe=lambda x: x)
    xs = np.asarray(sol.observables)
    np.testing.assert_allclose(xs[1:], beta[1:, None, None] * ys, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.asarray(sol.x), ys[-1], rtol=1e-10, atol=1e-10)  # β_N = 1


# ----------------------------------------------------------------------------- exporters
def test_every_exporter_writes_its_convention(tmp_path, x64):
    """Trailing zero or not, as each sampler takes it; plain decimals for ComfyUI (tiny levels
    would otherwise be written with exponents, which its ManualSigmas node splits)."""
    card = method_card("vp", "trig", steps=5, sigma_min=1e-5, sigma_max=14.6)
    paths = cards.export_card(card, tmp_path)
    assert set(paths) == {"card", *cards.EXPORTERS}
    assert {p.name for p in tmp_path.iterdir()} == {p.name for p in paths.values()}
    full = np.asarray(card.sigmas)
    assert full[-2] == pytest.approx(1e-5)

    assert json.loads(paths["diffusers"].read_text()) == list(full[:-1])
    assert json.loads(paths["diffusers_euler"].read_text()) == list(full)
    npy = np.load(paths["k_diffusion"])
    assert npy.dtype == np.float64 and npy.shape == (6,)
    np.testing.assert_array_equal(npy, full)
    text = paths["comfyui"].read_text()
    assert json.loads(text) == list(full)
    assert "e" not in text.lower()
    manual = [float(v) for v in re.findall(r"[-+]?(?:\d*\.*\d+)", text)]  # ComfyUI's parser
    assert manual == list(full)

    with paths["csv"].open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["i", "t", "tau", "alpha", "beta", "sigma", "log_snr"]
    assert [int(r["i"]) for r in rows] == list(range(6))
    for key, values in [("t", card.t), ("tau", card.tau), ("alpha", card.alpha),
                        ("beta", card.beta), ("sigma", card.sigmas), ("log_snr", card.log_snr)]:
        assert [float(r[key]) for r in rows] == list(values)
    assert rows[-1]["log_snr"] == "inf" and float(rows[-1]["sigma"]) == 0.0


def test_sigma_max_replaces_an_infinite_start_and_is_recorded(tmp_path, x64):
    card = builtin_card("ve", "linear", d=16, steps=6)
    assert card.infinite_start
    paths = cards.export_card(card, tmp_path, ["k_diffusion", "csv"], sigma_max=200.0)
    assert set(paths) == {"card", "k_diffusion", "csv"}
    sig = np.load(paths["k_diffusion"])
    assert sig[0] == 200.0 and list(sig[1:]) == list(card.sigmas[1:])
    back = cards.load_card(paths["card"])
    assert back.sigma_max == 200.0 and back.infinite_start  # the card keeps σ_0 = ∞
    assert back == card.with_sigma_max(200.0)
    with paths["csv"].open() as f:
        first = next(csv.DictReader(f))
    alpha, beta = float(first["alpha"]), float(first["beta"])
    assert alpha / beta == pytest.approx(200.0, rel=1e-12)  # row 0: the truncated start
    assert float(first["log_snr"]) == pytest.approx(-2 * np.log(200.0), rel=1e-14)
    # the schedule a sampler runs from these files starts at α(0) = β_0 σ_max
    trunc = ns.schedules.KnotSchedule.from_noise_levels(card.interpolant(), sig)
    assert float(card.interpolant().prior_scale(trunc)) == pytest.approx(alpha, rel=1e-12)


# ----------------------------------------------------------------------------- bad inputs
def test_infinite_start_without_sigma_max_is_refused_by_every_writer(tmp_path, x64):
    card = builtin_card()
    for name, write in cards.EXPORTERS.items():
        with pytest.raises(ValueError, match="pass sigma_max"):
            write(card, tmp_path / name)
    with pytest.raises(ValueError, match=r"sigma_0 = inf .* pass sigma_max \(--sigma-max\)"):
        cards.export_card(card, tmp_path / "all")
    assert not any(tmp_path.iterdir())  # nothing written


def test_bad_sigma_max(tmp_path, x64):
    card = builtin_card()
    s1 = card.sigmas[1]
    for bad in (s1, 0.5 * s1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="sigma_max must be finite and greater than"):
            cards.export_card(card, tmp_path, sigma_max=bad)
    finite = method_card()
    with pytest.raises(ValueError, match="replaces an infinite sigma_0"):
        cards.export_card(finite, tmp_path, sigma_max=100.0)
    assert not any(tmp_path.iterdir())


def test_card_of_another_d_is_refused(tmp_path, x64):
    path = cards.save_card(builtin_card(d=16), tmp_path / "card.json")
    assert cards.load_card(path, d=16).d == 16
    with pytest.raises(ValueError, match=r"made for d = 16, not d = 32"):
        cards.load_card(path, d=32)


def test_unknown_format_and_too_few_steps(tmp_path, x64):
    card = method_card()
    with pytest.raises(ValueError, match="format must be one of"):
        cards.export_card(card, tmp_path, ["diffusers", "safetensors"])
    assert not any(tmp_path.iterdir())
    interp = ns.Interpolant("vp", "linear", 8)
    with pytest.raises(ValueError, match="steps must be an integer >= 2"):
        cards.make_card(ns.schedules.constant(), interp, 1, solver="euler", source={})
    with pytest.raises(ValueError, match="KnotSchedule made for N = 6"):
        cards.make_card(ns.methods.make("edm", None, interp, 6), interp, 8, solver="euler",
                        source={})
    with pytest.raises(ValueError, match="source must hold JSON values"):
        cards.make_card(ns.schedules.constant(), interp, 4, solver="euler",
                        source={"f": object()})


@pytest.mark.parametrize("edit,match", [
    (lambda c: c.update(format="something-else"), "not a schedule card"),
    (lambda c: c.update(version=2), "version 2 is not supported"),
    (lambda c: c["sigmas"].__setitem__(2, None), r"sigmas\[2\] is null"),
    (lambda c: c.update(sigmas_no_zero=c["sigmas"]), "sigmas_no_zero must be sigmas without"),
    (lambda c: c.update(infinite_start=False), "infinite_start = False disagrees"),
    (lambda c: c.pop("log_snr"), "lacks log_snr"),
    (lambda c: [c[k].__setitem__(3, 10.0) for k in ("sigmas", "sigmas_no_zero")],
     "decrease strictly"),
    (lambda c: c["alpha"].__setitem__(3, 0.1), "sigmas must equal alpha/beta"),
    (lambda c: c["log_snr"].__setitem__(3, 0.1), "log_snr must equal"),
    (lambda c: c.update(sigma_max=0.01), "sigma_max must be finite and greater"),
])
def test_damaged_card_files_are_refused(edit, match, tmp_path, x64):
    path = cards.save_card(builtin_card(), tmp_path / "card.json")
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=match):
        cards.load_card(path)


# ----------------------------------------------------------------------------- the command line
CONFIG = """name = "tiny"
[model]
name = "gm"
d = 8
[interpolant]
kind = "vp"
shape = "linear"
[schedule]
name = "vp_dilated"
k = 2.0
[solver]
name = "sigma_euler"
steps = 6
"""


def run_cli(args, capsys):
    code = main(["export", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_an_export_folder_holds_exactly_the_last_exports_files(tmp_path, capsys, x64):
    """Seen in a hostile test: exporting again with fewer formats left the earlier files beside
    the new card, and a folder of a user's files was written into."""
    config = tmp_path / "tiny.toml"
    config.write_text(CONFIG)
    out = tmp_path / "out"
    assert run_cli([config, "--sigma-max", 50, "--out", out], capsys)[0] == 0
    assert len(result_files(out)) == 6
    assert run_cli([config, "--sigma-max", 50, "--format", "csv", "--out", out], capsys)[0] == 0
    assert result_files(out) == ["card.json", "schedule.csv"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    code, _, err = run_cli([config, "--sigma-max", 50, "--out", mine], capsys)
    assert code == 2 and "holds files that no noisesched command wrote (notes.txt)" in err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_cli_export_end_to_end(tmp_path, capsys, x64):
    config = tmp_path / "tiny.toml"
    config.write_text(CONFIG)
    out = tmp_path / "all"
    code, printed, _ = run_cli([config, "--sigma-max", 50, "--out", out], capsys)
    assert code == 0 and "card.json" in printed
    assert set(result_files(out)) == {
        "card.json", "sigmas_diffusers.json", "sigmas_diffusers_euler.json",
        "sigmas_k_diffusion.npy", "sigmas_comfyui.json", "schedule.csv"}
    card = cards.load_card(out / "card.json", d=8)
    assert card.source == {"type": "schedule", "name": "vp_dilated", "options": {"k": 2.0}}
    assert card.solver == "sigma_euler" and card.steps == 6 and card.sigma_max == 50.0
    interp = ns.Interpolant("vp", "linear", 8)
    expected = schedule_arrays(ns.schedules.vp_dilated(8, 2.0), interp, 6)["sigma"]
    np.testing.assert_array_equal(card.sigmas, expected)

    # a method with options, fewer formats, another N
    out2 = tmp_path / "edm"
    code, _, _ = run_cli([config, "--method", "edm", "--option", "sigma_max=20",
                          "--option", "rho=5", "--steps", 5, "--format", "diffusers", "csv",
                          "--out", out2], capsys)
    assert code == 0
    assert set(result_files(out2)) == {"card.json", "sigmas_diffusers.json", "schedule.csv"}
    card = cards.load_card(out2 / "card.json")
    assert card.source["type"] == "method" and card.source["options"] == {"sigma_max": 20,
                                                                          "rho": 5}
    assert card.source["model"]["name"] == "gm" and card.steps == 5
    assert json.loads((out2 / "sigmas_diffusers.json").read_text()) == list(card.sigmas[:-1])
    assert card.sigmas[0] == 20.0

    # a learned schedule file (schedule.name = "@path")
    from noisesched.learning import PiecewiseLinear, save_schedule

    learned = save_schedule(PiecewiseLinear([0.3, -0.2, 0.1]), tmp_path / "learned.json")
    out3 = tmp_path / "learned"
    code, _, _ = run_cli([config, "--set", f"schedule.name=@{learned}", "--sigma-max", 40,
                          "--format", "k_diffusion", "--out", out3], capsys)
    assert code == 0
    card = cards.load_card(out3 / "card.json")
    assert card.source["type"] == "schedule_file" and card.source["path"] == str(learned)
    assert card.source["family"] == "piecewise_linear" and len(card.source["sha256"]) == 64

    # a card exported again, checked against the config's d
    out4 = tmp_path / "again"
    code, _, _ = run_cli([config, "--card", out / "card.json", "--format", "comfyui",
                          "--out", out4], capsys)
    assert code == 0
    assert json.loads((out4 / "sigmas_comfyui.json").read_text())[0] == 50.0


@pytest.mark.parametrize("args,message", [
    (["--method", "nope"], "method must be one of"),
    (["--method", "edm", "--steps", 1], "steps must be an integer >= 2; got 1"),
    (["--steps", 1], "steps must be an integer >= 2; got 1"),
    (["--method", "edm", "--option", "sigma_min=10", "--option", "sigma_max=5"],
     "sigma_max must be greater than sigma_min"),
    (["--method", "edm", "--option", "bogus=1"], "option 'bogus' is not used by method 'edm'"),
    (["--format", "png", "--sigma-max", 50], "format must be one of"),
    ([], "pass sigma_max (--sigma-max)"),
    (["--sigma-max", 0.5], "sigma_max must be finite and greater than sigma_1"),
    (["--card", "OTHER"], "made for d = 32, not d = 8"),
    (["--card", "OTHER", "--steps", 4], "takes no --steps"),
])
def test_cli_export_errors_are_one_line_with_status_2(args, message, tmp_path, capsys, x64):
    config = tmp_path / "tiny.toml"
    config.write_text(CONFIG)
    other = tmp_path / "other" / "card.json"
    cards.save_card(builtin_card(d=32), other)
    out = tmp_path / "out"
    args = [other if a == "OTHER" else a for a in args]
    code, printed, err = run_cli([config, *args, "--out", out], capsys)
    assert code == 2 and printed == ""
    assert err.count("\n") == 1 and err.startswith("noisesched: error: ")
    assert message in err
    assert not out.exists()


def test_cli_export_needs_a_config_or_a_card(capsys):
    code, _, err = run_cli([], capsys)
    assert code == 2
    assert err == ("noisesched: error: export takes a config path (CONFIG or --config CONFIG) "
                   "or a card (--card CARD); got neither\n")


def test_cli_export_of_a_method_in_the_config(tmp_path, capsys, x64):
    """``[schedule] name = "edm"``: the card holds EDM's levels for ``--steps`` (the method is
    made for them, not for the config's solver.steps) and names the method and its model."""
    from noisesched.cards import load_card
    from noisesched.methods import edm_levels

    cfg = tmp_path / "m.toml"
    cfg.write_text(CONFIG.replace('name = "vp_dilated"\nk = 2.0',
                                  'name = "edm"\nsigma_max = 40.0'))
    code, _, err = run_cli([cfg, "--steps", 5, "--format", "csv", "--out", tmp_path / "o"],
                           capsys)
    assert code == 0, err
    card = load_card(tmp_path / "o" / "card.json")
    np.testing.assert_allclose(card.sigmas, np.r_[edm_levels(5, sigma_max=40.0), 0.0],
                               rtol=1e-12)
    assert card.source["type"] == "method" and card.source["name"] == "edm"
    assert card.source["model"]["name"] == "gm"
