"""Costs from recorded turns: the trace format, cache-aware pricing, reports and the simulator.

Layering: this package reads specs, the engine and the checker; LiteLLM (prices) and numpy
(vectorised Monte-Carlo) are imported lazily, only where they are needed.
"""

from .pricing import PriceMap, cache_split
from .records import TraceError, TraceRecord, load_trace
from .report import Summary, summarise

__all__ = ["PriceMap", "Summary", "TraceError", "TraceRecord", "cache_split", "load_trace", "summarise"]
