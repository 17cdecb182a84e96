"""Learnable schedules (the start of schedule learning; losses and the fit loop build on them)."""

from .families import PiecewiseLinear

__all__ = ["PiecewiseLinear"]
