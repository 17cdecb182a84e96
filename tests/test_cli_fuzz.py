"""``noisesched run`` fuzzed end to end: config files and ``--set`` overrides drawn across the
whole key space (valid values, values out of range, of the wrong type, unknown keys, odd
strings). No draw may end in a traceback or an unexplained exit status, and a rejected run must
leave nothing behind.

Exit statuses (``noisesched.cli``): 0 success; 2 bad input; 1 a run that was valid but failed
(an adaptive solve out of its ``max_steps``, nan or inf), which a draw can reach with valid
values (``solver.max_steps = 1``): it too must be one line and leave nothing behind.
"""

import contextlib
import io
import json
import os
import tempfile
import warnings
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_properties import _BASE, SCALE, override_items, sectioned_configs

from noisesched.cli import main

#: every example runs the command (a solve and its compilation when the config is valid)
CLI_FUZZ = settings(max_examples=20 * SCALE, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])

#: keys that size the work: drawn from values that are cheap, or invalid
_SIZES = {"model.d", "sample.n", "solver.steps", "solver.max_steps", "output.trajectories",
          "sample.chunk_size"}
_SIZE_VALUES = st.sampled_from(["-1", "0", "1", "3", "8", "2.5", "nan", "'x'", "[]", "true",
                                "18446744073709551616", "100000000000000000000"])
#: schedule methods that optimise against the model (minutes) are left to their own tests
_SLOW_METHODS = ("ld3", "oss", "gits", "ays", "score_optimal", "lipschitz")


@st.composite
def cheap_override(draw):
    item = draw(override_items())
    key, sep, _ = item.partition("=")
    if sep and key.strip() in _SIZES:
        return f"{key.strip()}={draw(_SIZE_VALUES)}"
    return item


def _affordable(item: str) -> bool:
    return not any(method in item for method in _SLOW_METHODS)


def _run(folder: Path, config: Path, items: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    args = ["run", str(config), *(["--set", *items] if items else []), "--out",
            str(folder / "out")]
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                status = main(args)
            except SystemExit as exit:  # argparse: an item it reads as an option
                status = exit.code if isinstance(exit.code, int) else 2
    finally:
        os.chdir(cwd)
    return status, err.getvalue()


def _check(folder: Path, status: int, err: str) -> None:
    assert status in (0, 1, 2), (status, err)
    left = sorted(p.name for p in folder.iterdir() if p.name != "c.toml")
    if status == 0:
        assert left == ["out"], left
        assert (folder / "out" / "results.json").is_file()
        event("ran")
        return
    lines = [line for line in err.strip().splitlines() if not line.startswith(
        "noisesched: warning:")]
    assert len(lines) == 1 and lines[0].startswith("noisesched: error: "), err
    assert "Traceback" not in err
    assert left == [], left  # a rejected or failed run leaves nothing behind
    event(f"status {status}")


@CLI_FUZZ
@given(st.lists(cheap_override(), max_size=4).filter(lambda items: all(map(_affordable, items))))
def test_fuzzed_overrides_of_a_small_config_run_or_are_refused_cleanly(unchecked_types, items):
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        config = folder / "c.toml"
        config.write_text(_toml(_BASE))
        _check(folder, *_run(folder, config, items))


@CLI_FUZZ
@given(sectioned_configs())
def test_fuzzed_config_files_run_or_are_refused_cleanly(unchecked_types, data):
    sizes = {"model": {"d": 8}, "sample": {"n": 8, "chunk_size": 0},
             "solver": {"steps": 3, "max_steps": 64}, "output": {"trajectories": 4}}
    # the sizes of a cheap run wherever the drawn config leaves a section a table
    for section, values in sizes.items():
        if isinstance(data.get(section, {}), dict):
            data[section] = {**data.get(section, {}), **values}
    text = _toml(data)
    if not _affordable(text):
        return
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        config = folder / "c.toml"
        config.write_text(text)
        _check(folder, *_run(folder, config, []))


def _toml(data: dict) -> str:
    """A mapping as TOML text: top-level values, then one table per section (values as JSON,
    which is TOML for the numbers, strings, booleans and arrays drawn; nan and infinities as
    TOML's bare words)."""
    def value(v):
        text = json.dumps(v, allow_nan=True)
        return text.replace("NaN", "nan").replace("Infinity", "inf")

    def inline(table: dict) -> str:
        return "{" + ", ".join(f"{json.dumps(str(k))} = {encode(v)}" for k, v in table.items()) \
            + "}"

    def encode(v):
        return inline(v) if isinstance(v, dict) else value(v)

    top = [f"{json.dumps(str(k))} = {encode(v)}" for k, v in data.items()
           if not isinstance(v, dict)]
    tables = [f"[{json.dumps(str(k))}]\n" + "\n".join(f"{json.dumps(str(kk))} = {encode(vv)}"
                                                      for kk, vv in v.items())
              for k, v in data.items() if isinstance(v, dict)]
    return "\n".join(top) + "\n" + "\n".join(tables) + "\n"
