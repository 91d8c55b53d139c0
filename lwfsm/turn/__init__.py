"""The turn core: judging turns, choosing the role per call, the ledger; pure (no SDK, no HTTP)."""

from .core import Conversation, ConversationState, Judged, PendingTurn, Plan, TurnCore, Verdict
from .judge import Detector, default_detectors, malformed_tool_calls, pattern_detectors, unparsable_code
from .ledger import Ledger, LedgerRow, Pricer, Usage

__all__ = [
    "Conversation",
    "ConversationState",
    "Detector",
    "Judged",
    "Ledger",
    "LedgerRow",
    "PendingTurn",
    "Plan",
    "Pricer",
    "TurnCore",
    "Usage",
    "Verdict",
    "default_detectors",
    "malformed_tool_calls",
    "pattern_detectors",
    "unparsable_code",
]
