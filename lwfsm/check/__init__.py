"""Exhaustive checking of a spec: every reachable configuration, with shortest counterexamples."""

from .explore import (
    MAX_CONFIGURATIONS,
    Finding,
    Report,
    TooLarge,
    Unsaturable,
    check,
    check_grid,
    estimate,
    param_grid,
    saturation_bounds,
    unused_only_here,
)

__all__ = [
    "MAX_CONFIGURATIONS",
    "Finding",
    "Report",
    "TooLarge",
    "Unsaturable",
    "check",
    "check_grid",
    "estimate",
    "param_grid",
    "saturation_bounds",
    "unused_only_here",
]
