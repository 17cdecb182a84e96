import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# the command line's persistent compilation cache is tested on its own (test_cli); elsewhere an
# in-process main() must not switch it on for the rest of the session
os.environ.setdefault("NOISESCHED_NO_COMPILE_CACHE", "1")

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def x64():
    """Run a test in float64 without leaking the setting into other tests."""
    with jax.enable_x64(True):
        yield
