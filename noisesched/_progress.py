"""The one progress meter of long loops (``noisesched fit``, ``noisesched scaling``): ``tqdm``,
redrawn in place on a terminal, and a plain line every ``LINE_INTERVAL`` seconds (and at the
start and the end) when the stream is not a terminal (a log file, a CI job, a pipe), where
carriage-return redraws would pile up on one line."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

#: Seconds between two lines when the stream is not a terminal.
LINE_INTERVAL = 30.0

_LINE_FORMAT = "{desc}: {n_fmt}/{total_fmt} ({percentage:.0f} %), {elapsed} elapsed{postfix}"


class _Lines:
    """A text stream that writes tqdm's redraws (``"\\r" + status + padding``) as plain lines:
    carriage returns and padding dropped, empty and repeated lines skipped."""

    def __init__(self, stream: Any):
        self.stream = stream
        self.last = ""

    def write(self, text: str) -> int:
        line = text.replace("\r", "").strip()
        if line and line != self.last:
            self.stream.write(line + "\n")
            self.last = line
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_bar(total: int, *, desc: str, initial: int = 0, enabled: bool = True,
                 stream: Any = None) -> tqdm:
    """A ``tqdm`` meter of ``total`` steps on ``stream`` (default: ``sys.stderr`` at the time
    of the call), starting at ``initial``; ``enabled=False``: silent. Update it with
    ``update(1)``, show the current state with ``set_postfix_str(text, refresh=False)``, and
    ``close()`` it at the end."""
    stream = sys.stderr if stream is None else stream
    if _is_terminal(stream):
        return tqdm(total=total, initial=initial, desc=desc, file=stream, disable=not enabled,
                    dynamic_ncols=True, leave=True)
    return tqdm(total=total, initial=initial, desc=desc, file=_Lines(stream),
                disable=not enabled, ascii=True, bar_format=_LINE_FORMAT, leave=True,
                mininterval=LINE_INTERVAL, maxinterval=LINE_INTERVAL, miniters=1)
