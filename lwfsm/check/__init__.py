"""Exhaustive checking of a spec: every reachable configuration, with shortest counterexamples."""

from .explore import Finding, Report, Unsaturable, check, check_grid, param_grid, saturation_bounds

__all__ = ["Finding", "Report", "Unsaturable", "check", "check_grid", "param_grid", "saturation_bounds"]
