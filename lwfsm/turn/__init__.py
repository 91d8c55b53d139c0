"""The turn core: judging turns, choosing the role per call, the ledger; pure (no SDK, no HTTP)."""

from .core import Conversation, ConversationState, Judged, PendingTurn, Plan, TurnCore, UnreadableMessages, Verdict
from .judge import Detector, Judgement, judge, malformed_tool_calls, unparsable_code
from .ledger import Ledger, LedgerRow, Pricer, Usage

__all__ = [
    "Conversation",
    "ConversationState",
    "Detector",
    "Judged",
    "Judgement",
    "Ledger",
    "LedgerRow",
    "PendingTurn",
    "Plan",
    "Pricer",
    "TurnCore",
    "UnreadableMessages",
    "Usage",
    "Verdict",
    "judge",
    "malformed_tool_calls",
    "unparsable_code",
]
