"""Experiments built on the library: the demo, and their output helpers."""
