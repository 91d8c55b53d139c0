"""lwfsm: an explicit finite-state machine that switches an LLM agent between a lead and a worker model.

from lwfsm import Engine, load_spec
session = Engine(load_spec("lead_worker")).session()
session.role            # "lead": the role that serves the next turn
session.turn_completed()  # or session.failure("tests failed")
"""

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
    TransitionNotAllowed,
    Unsaturable,
)
from .spec import Spec, load_spec
from .turn import Conversation, ConversationState, TurnCore

__version__ = "0.1.0"

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
    "TransitionNotAllowed",
    "TransitionRecord",
    "TurnCore",
    "Unsaturable",
    "load_spec",
]
