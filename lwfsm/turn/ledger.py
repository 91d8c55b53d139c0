"""The ledger: tokens by kind, retries and latency per (role, model), as a value that travels with
the conversation. Prices come from a `Pricer` the front end supplies (the LiteLLM provider reads
LiteLLM's local price map), so this module needs no SDK."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Ledger", "LedgerRow", "Pricer", "Usage"]


class _Value(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)


_MOST = 10**12  # tokens in one call: more is no count a provider made (the largest context windows hold ~10**7)


class Usage(_Value):
    """Tokens of one call, by kind (0 where the provider did not report a kind)."""

    prompt_tokens: int = Field(default=0, ge=0)  # all input tokens, cached ones included
    completion_tokens: int = Field(default=0, ge=0)
    cache_read_tokens: int = Field(default=0, ge=0)
    cache_write_tokens: int = Field(default=0, ge=0)
    reasoning_tokens: int = Field(default=0, ge=0)
    # Calls whose provider reported no tokens (a stream without a usage chunk): their counts are not in
    # the fields above, and their cost is unknown rather than a local estimate.
    unreported: int = Field(default=0, ge=0)

    @classmethod
    def of(cls, usage: Any) -> Usage:
        """From an OpenAI/LiteLLM usage object or dict (Anthropic's cache fields included). None (the
        provider reported no usage) is one unreported call: unknown tokens, never zero."""

        def get(obj: Any, name: str) -> Any:
            return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)

        def count(v: Any) -> int | None:  # None: no count of tokens (negative, text, 1e30)
            return v if type(v) is int and 0 <= v <= _MOST else None

        given = None if usage is None else (get(usage, "prompt_tokens"), get(usage, "completion_tokens"))
        if given is None or given == (None, None) or any(v is not None and count(v) is None for v in given):
            # none reported, or what was is not a count: unknown, never zero
            return cls.model_construct(**_UNREPORTED)
        prompt, completion = (count(v) or 0 for v in given)
        prompt_details = get(usage, "prompt_tokens_details")
        completion_details = get(usage, "completion_tokens_details")
        cached = get(prompt_details, "cached_tokens") if prompt_details is not None else None
        reasoning = get(completion_details, "reasoning_tokens") if completion_details is not None else None
        return cls.model_construct(  # every field is an int >= 0 already: no second validation
            prompt_tokens=prompt,
            completion_tokens=completion,
            cache_read_tokens=count(get(usage, "cache_read_input_tokens")) or count(cached) or 0,
            cache_write_tokens=count(get(usage, "cache_creation_input_tokens")) or 0,
            reasoning_tokens=count(reasoning) or 0,
            unreported=0,
        )

    def __add__(self, other: Usage) -> Usage:
        return Usage.model_construct(**{k: getattr(self, k) + getattr(other, k) for k in Usage.model_fields})


# Every field given: model_construct looks up the default of each one left out (~2 us per call).
_UNREPORTED: dict[str, Any] = dict(
    prompt_tokens=0, completion_tokens=0, cache_read_tokens=0, cache_write_tokens=0, reasoning_tokens=0, unreported=1
)

Pricer = Callable[[str, Usage], "float | None"]  # (model, usage) -> dollars; None: no price known


class LedgerRow(_Value):
    # Checked when a stored conversation is read back (the hot path builds rows with model_construct):
    # a row edited or damaged in the store is refused, not counted into costs and reports.
    role: str
    model: str
    calls: int = Field(default=0, ge=0)
    side_calls: int = Field(default=0, ge=0)  # calls that were not turns (titles, summaries)
    usage: Usage = Field(default_factory=lambda: Usage.model_validate({}))
    retries: int = Field(default=0, ge=0)
    latency: float = Field(default=0.0, ge=0, allow_inf_nan=False)  # seconds, summed

    @model_validator(mode="after")
    def _sides_are_calls(self) -> LedgerRow:
        if self.side_calls > self.calls:
            raise ValueError(f"{self.side_calls} side calls of {self.calls} calls")
        return self


class Ledger(_Value):
    """Totals per (role, model), in the order first used."""

    rows: tuple[LedgerRow, ...] = ()

    @model_validator(mode="after")
    def _one_row_each(self) -> Ledger:
        seen = [(r.role, r.model) for r in self.rows]
        if len(set(seen)) < len(seen):
            twice = next(k for k in seen if seen.count(k) > 1)
            raise ValueError(f"role {twice[0]!r} with model {twice[1]!r} has two rows")
        return self

    def add(self, role: str, model: str, usage: Usage, *, retries: int, latency: float, side: bool) -> Ledger:
        # Built from values already validated: model_construct skips a second validation on the hot path.
        rows = list(self.rows)
        i = next((i for i, r in enumerate(rows) if (r.role, r.model) == (role, model)), None)
        row = rows[i] if i is not None else None
        row = LedgerRow.model_construct(
            role=role,
            model=model,
            calls=(row.calls if row else 0) + 1,
            side_calls=(row.side_calls if row else 0) + side,
            usage=row.usage + usage if row else usage,
            retries=(row.retries if row else 0) + retries,
            latency=(row.latency if row else 0.0) + latency,
        )
        if i is None:
            rows.append(row)
        else:
            rows[i] = row
        return Ledger.model_construct(rows=tuple(rows))

    @property
    def calls(self) -> int:
        return sum(r.calls for r in self.rows)

    def cost(self, pricer: Pricer) -> float | None:
        """Dollars; None when any model used has no price (never a guess)."""
        costs = [pricer(r.model, r.usage) for r in self.rows]
        return None if None in costs else sum(c for c in costs if c is not None)

    def cost_on(self, model: str, pricer: Pricer) -> float | None:
        """What the same tokens would have cost on one model (e.g. the lead's alone)."""
        costs = [pricer(model, r.usage) for r in self.rows]
        return None if None in costs else sum(c for c in costs if c is not None)

    def table(self, pricer: Pricer, lead_model: str | None = None) -> str:
        def money(v: float | None, sign: str = "") -> str:
            return "unknown" if v is None else f"{sign}{v:.6f}"

        lines = [f"{'role model':40} {'calls':>5} {'tokens in':>9} {'out':>6} {'retries':>7} {'cost $':>10}"]
        for r in self.rows:
            lines.append(
                f"{r.role + ' ' + r.model:40} {r.calls:>5} {r.usage.prompt_tokens:>9} {r.usage.completion_tokens:>6} "
                f"{r.retries:>7} {money(pricer(r.model, r.usage)):>10}"
                + (f"  ({r.usage.unreported} calls without reported tokens)" if r.usage.unreported else "")
            )
        line = f"total cost {money(self.cost(pricer), '$')}"  # "$unknown" read as a price
        if lead_model:
            line += f"; the same tokens on the lead alone: {money(self.cost_on(lead_model, pricer), '$')}"
        lines.append(line)
        return "\n".join(lines)
