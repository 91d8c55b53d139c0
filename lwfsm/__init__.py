"""lwfsm: an explicit finite-state machine that switches an LLM agent between a lead and a worker model.

from lwfsm import Engine, load_spec
session = Engine(load_spec("lead_worker")).session()
session.role            # "lead": the role that serves the next turn
session.turn_completed()  # or session.failure("tests failed")
"""

from typing import TYPE_CHECKING

from .engine import Engine, Session, Snapshot, TransitionRecord
from .errors import (
    AllAttemptsFailed,
    AuthError,
    BadRequestError,
    ConfigError,
    Conflict,
    DiagramError,
    LwfsmError,
    ProviderError,
    RunError,
    SessionBusy,
    SnapshotError,
    SpecError,
    SpecIssue,
    StoreError,
    TooLarge,
    TraceError,
    TransitionNotAllowed,
    Unsaturable,
)
from .spec import Spec, load_spec

if TYPE_CHECKING:
    from .turn import Conversation, ConversationState, TurnCore

__version__ = "0.1.0"

_LAZY = {"Conversation", "ConversationState", "TurnCore"}  # the turn core: only front ends need it


def __getattr__(name: str) -> object:
    # PEP 562: `import lwfsm` stays as light as the engine; the turn core loads on first use.
    if name in _LAZY:
        from . import turn

        return getattr(turn, name)
    raise AttributeError(f"module 'lwfsm' has no attribute {name!r}")


__all__ = [
    "AllAttemptsFailed",
    "AuthError",
    "BadRequestError",
    "ConfigError",
    "Conflict",
    "Conversation",
    "ConversationState",
    "DiagramError",
    "Engine",
    "LwfsmError",
    "ProviderError",
    "RunError",
    "Session",
    "SessionBusy",
    "Snapshot",
    "SnapshotError",
    "Spec",
    "SpecError",
    "SpecIssue",
    "StoreError",
    "TooLarge",
    "TraceError",
    "TransitionNotAllowed",
    "TransitionRecord",
    "TurnCore",
    "Unsaturable",
    "load_spec",
]
