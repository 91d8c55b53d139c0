"""The spec language: the model (`model`), YAML with locations (`reading`), the checks of meaning
(`validation`) and the expression language (`expr`). Depends on nothing else in lwfsm but `errors`."""

from .model import (
    Counter,
    Event,
    Initial,
    Invariant,
    Judging,
    Param,
    Role,
    Spec,
    State,
    Transition,
    describe_params,
    load_spec,
    shipped_specs,
)

__all__ = [
    "Counter",
    "Event",
    "Initial",
    "Invariant",
    "Judging",
    "Param",
    "Role",
    "Spec",
    "State",
    "Transition",
    "describe_params",
    "load_spec",
    "shipped_specs",
]
