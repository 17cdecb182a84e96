"""``python -m noisesched``: the command line."""

from .cli import entry

entry()
