"""Ctrl-C and SIGTERM that cannot be lost.

Python raises a signal handler's exception wherever the interpreter happens to be. When that is
inside a callback whose exceptions are discarded (a ``__del__``, a garbage-collection callback of
the array runtime, a weak-reference finaliser), the exception is printed as "ignored" and the
program runs on as if no signal had come. The handler here therefore also records the signal,
and the places a long command passes through (every wait for a computation, every iteration of
a training loop, every publication of a result) raise it again if it was swallowed. Waits for a
computation poll it (``wait_interruptibly``), so that the handler runs at all during one.

The record is process state because signals are: one handler per process, installed by the
command-line program for the duration of a command.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import jax

__all__ = ["Terminated", "handling_signals", "raise_if_pending", "wait_interruptibly"]


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that every ``finally`` and temporary file is
    cleaned up as for Ctrl-C."""


#: Signals received during the current command and not yet raised where they are heard.
_pending: list[int] = []


def _exception(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _handler(signum: int, frame) -> None:
    _pending.append(signum)
    raise _exception(signum)


def raise_if_pending() -> None:
    """Raise the interruption of a signal whose first raise was swallowed (no-op otherwise)."""
    if _pending:
        raise _exception(_pending[-1])


def wait_interruptibly(tree: Any, longest_nap: float = 0.05) -> Any:
    """``tree`` once its arrays are computed, polling them (naps of 1 ms doubling to
    ``longest_nap`` s) rather than blocking: Python runs signal handlers only between its own
    instructions, so a blocking wait would defer Ctrl-C and SIGTERM until a computation of
    minutes ended. A signal whose exception was swallowed is raised here.
    """
    arrays = [leaf for leaf in jax.tree.leaves(tree) if hasattr(leaf, "is_ready")]
    nap = 1e-3
    while not all(array.is_ready() for array in arrays):
        raise_if_pending()
        time.sleep(nap)
        nap = min(2 * nap, longest_nap)
    return tree


@contextlib.contextmanager
def handling_signals() -> Iterator[None]:
    """Raise ``KeyboardInterrupt`` on SIGINT and ``Terminated`` on SIGTERM while the block runs,
    and remember them until the block ends (on the main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
        raise_if_pending()  # a signal swallowed after the last check still ends the command
    finally:
        _pending.clear()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
