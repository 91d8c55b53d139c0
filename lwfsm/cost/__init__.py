"""Costs from recorded turns: the trace format, cache-aware pricing, reports and the simulator.

Layering: this package reads specs, the engine and the checker; numpy (vectorised Monte-Carlo) and
pyarrow (Parquet traces) are imported lazily, only where they are needed; prices are LiteLLM's bundled
data file, read without importing LiteLLM. Traces are streamed (`read_records`): memory grows with
the number of conversations, not of lines.
"""

from .pricing import PriceMap, cache_split
from .records import TraceError, TraceRecord, load_trace, read_records
from .report import Summary, summarise

__all__ = [
    "PriceMap",
    "Summary",
    "TraceError",
    "TraceRecord",
    "cache_split",
    "load_trace",
    "read_records",
    "summarise",
]
