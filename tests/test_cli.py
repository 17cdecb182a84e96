import json
import os
import subprocess
import sys

import pytest
from helpers import result_files

from noisesched.cli import main

SMALL = ["--d", "400", "--n", "256", "--steps", "20"]


def test_demo_writes_results_and_figure(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["demo", *SMALL, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "vp_dilated" in printed and "mode weight" in printed
    result = json.loads((out / "results.json").read_text())
    assert result["config"]["d"] == 400
    assert [(r["kind"], r["schedule"]) for r in result["results"]] == [
        ("vp", "constant"), ("vp", "vp_dilated"), ("ve", "constant"), ("ve", "ve_dilated")]
    assert result["environment"]["backend"] == "cpu"
    assert (out / "demo.png").stat().st_size > 10_000
    assert result_files(out) == ["demo.png", "results.json"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--p", "1.5"], "p must be in (0, 1); got 1.5"),
        (["--sigma", "0"], "sigma must be in (0, 1e+15]; got 0.0"),
        (["--d", "0"], "d must be an integer >= 2; got 0"),
        (["--n", "0"], "n must be an integer >= 1; got 0"),
        (["--steps", "0"], "steps must be an integer >= 1; got 0"),
        (["--k", "50", "--d", "100"], "k must be in (0, 10); got 50.0"),
        (["--p", "nan"], "p must be a real number; got nan"),
        (["--n", "many"], "argument --n: invalid int value: 'many'"),
        (["--bogus", "1"], "unrecognized arguments: --bogus 1"),
    ],
)
def test_bad_input_is_one_line_and_status_2(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        code = main(["demo", *args, "--out", str(out)])
        raise SystemExit(code)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip() == f"noisesched: error: {message}"
    assert not out.exists()


def test_console_script_entry_point(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "noisesched.cli", "demo", "--p", "2"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "noisesched: error: p must be in (0, 1); got 2.0"
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "noisesched-out").exists()


def test_compile_cache_is_kept_between_runs_and_can_be_switched_off(tmp_path):
    """`noisesched run` fills the persistent compilation cache; a second run reads it (same
    results); --no-compile-cache leaves the folder untouched."""
    config = tmp_path / "c.toml"
    config.write_text("[model]\nd = 100\n[sample]\nn = 32\n[solver]\nsteps = 8\n"
                      "[output]\nfigures = false\n")
    env = {k: v for k, v in os.environ.items() if k != "NOISESCHED_NO_COMPILE_CACHE"}

    def run(out, cache, *extra):
        proc = subprocess.run(
            [sys.executable, "-m", "noisesched.cli", "run", str(config), "--out", str(out),
             *extra], capture_output=True, text=True,
            env=dict(env, NOISESCHED_CACHE_DIR=str(cache), JAX_PLATFORMS="cpu"))
        assert proc.returncode == 0, proc.stderr
        return json.loads((out / "results.json").read_text())["metrics"]

    cold = run(tmp_path / "a", tmp_path / "cache")
    entries = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert entries, "the first run wrote no compiled program"
    warm = run(tmp_path / "b", tmp_path / "cache")
    assert warm == cold
    off = run(tmp_path / "c", tmp_path / "off", "--no-compile-cache")
    assert off == cold and not (tmp_path / "off").exists()


def test_several_key_values_after_one_set(tmp_path, capsys):
    """``--set a=1 b=2`` is ``--set a=1 --set b=2``; both forms mix, in order."""
    from noisesched.cli import _build_parser, _overrides

    args = _build_parser().parse_args(["run", "c.toml", "--set", "model.d=200", "sample.n=64",
                                       "--set", "solver.steps=10", "--out", "o"])
    assert args.config == "c.toml" and args.out == "o"
    assert _overrides(args) == ["model.d=200", "sample.n=64", "solver.steps=10"]
    args = _build_parser().parse_args(["fit", "c.toml", "--set", "fit.iterations=3",
                                       "model.d=50", "--no-progress"])
    assert _overrides(args) == ["fit.iterations=3", "model.d=50"] and args.no_progress

    # one --set per item is the same list of overrides as all items after one --set
    one = _build_parser().parse_args(["run", "c.toml", "--set", "model.d=100", "sample.n=16",
                                      "solver.steps=4", "output.figures=false"])
    each = _build_parser().parse_args(["run", "c.toml", "--set", "model.d=100", "--set",
                                       "sample.n=16", "--set", "solver.steps=4", "--set",
                                       "output.figures=false"])
    assert _overrides(one) == _overrides(each) == ["model.d=100", "sample.n=16",
                                                  "solver.steps=4", "output.figures=false"]

    # a run with both forms mixed: every item reaches the config, and a later item wins,
    # within one --set and across them
    config = tmp_path / "c.toml"
    config.write_text("name = 'c'\n[model]\nname = 'gm'\n")
    last = tmp_path / "last"
    assert main(["run", str(config), "--set", "model.d=100", "sample.n=16", "sample.n=8",
                 "solver.steps=4", "--set", "output.figures=false", "model.d=64", "--out",
                 str(last)]) == 0
    c = json.loads((last / "results.json").read_text())["config"]
    assert (c["model"]["d"], c["sample"]["n"], c["solver"]["steps"], c["output"]["figures"]) == (
        64, 8, 4, False)
    assert result_files(last) == ["results.json"]
    # `--set` with nothing after it is argparse's one-line error
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(config), "--set"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "noisesched: error: argument --set: expected at least one argument")
