import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# the command line's persistent compilation cache is tested on its own (test_cli); elsewhere an
# in-process main() must not switch it on for the rest of the session
os.environ.setdefault("NOISESCHED_NO_COMPILE_CACHE", "1")

import jax  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402
from jaxtyping import install_import_hook  # noqa: E402

# Every jaxtyping annotation of the package is checked at run time in the tests (shapes and
# dtypes of arrays, consistent dimension names across arguments), through beartype.
if os.environ.get("NOISESCHED_TYPECHECK", "1") != "0":
    # (the numeric tower: an int is a valid float, as for static type checkers)
    install_import_hook("noisesched",
                        "beartype.beartype(conf=beartype.BeartypeConf(is_pep484_tower=True))")

# Property tests draw the same examples on every run (a CI failure is reproducible);
# HYPOTHESIS_PROFILE=explore draws new ones, and 20 times as many (test_properties.py).
settings.register_profile("default", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def unchecked_types():
    """For tests that pass wrongly typed values on purpose, to see the library's own error
    (what a user without the type-checking hook sees)."""
    import jaxtyping

    jaxtyping.config.update("jaxtyping_disable", True)
    try:
        yield
    finally:
        jaxtyping.config.update("jaxtyping_disable", False)


@pytest.fixture
def x64():
    """Run a test in float64 without leaking the setting into other tests."""
    with jax.enable_x64(True):
        yield


# ------------------------------------------------------------------ xdist: one worker per file
# A module-scoped fixture (a trained network, a fit, a compare study, a subprocess with four
# devices) is made once per worker that runs a test using it, and a compiled program is reused
# only within one worker. Under `-n 2` (pyproject.toml: `--dist load`) the tests of one file are
# spread over both workers, which make each such fixture twice (~1 min of CPU for the trained
# network alone) and compile the file's programs twice. The tests of one file go to one worker
# instead (`--dist loadfile`; files with more tests first). (xdist's `loadgroup` would group only
# the tests that share a fixture, but its groups are lost under pytest 9, whose node ids are
# no longer plain strings.) An explicit `--dist` other than `load` is kept.
def pytest_configure(config):
    if getattr(config.option, "dist", "no") == "load":
        config.option.dist = "loadfile"
