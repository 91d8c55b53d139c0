"""lwfsm: an explicit finite-state machine that switches an LLM agent between a lead and a worker model.

from lwfsm import Engine, load_spec
session = Engine(load_spec("specs/lead_worker.yaml")).session()
session.role            # "lead": the role that serves the next turn
session.turn_completed()  # or session.failure("tests failed")
"""

from .engine import Engine, Session, Snapshot, TransitionRecord
from .errors import (
    ConfigError,
    LwfsmError,
    ProviderError,
    RunError,
    SnapshotError,
    SpecError,
    SpecIssue,
    TransitionNotAllowed,
)
from .spec import Spec, load_spec

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Engine",
    "LwfsmError",
    "RunError",
    "Session",
    "Snapshot",
    "SnapshotError",
    "Spec",
    "SpecError",
    "SpecIssue",
    "TransitionNotAllowed",
    "TransitionRecord",
    "ProviderError",
    "load_spec",
]
