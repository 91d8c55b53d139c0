"""Cache-aware prices from LiteLLM's local price map, and the cache as it would have been.

Pricing one turn (`PriceMap.price`), per token kind, from the model's price-map entry:
- fresh input = prompt - cache_read - cache_write, at `input_cost_per_token`;
- cache reads at `cache_read_input_token_cost`; when the entry has none, at the input price only
  if the entry says the model has no prompt cache (`supports_prompt_caching` not true), else no
  price (None: a cached read on a caching model is never guessed at the full price);
- cache writes at `cache_creation_input_token_cost`; when the entry has none, at the input price
  (providers that cache implicitly, e.g. OpenAI, bill writes as ordinary input);
- completion tokens (reasoning included) at `output_cost_per_token`.
A model without an entry, or without input/output prices, has no price: None, never a guess.

The cache as it would have been (`cache_split`): a model keeps its cache while it serves
consecutive turns of a conversation, and any switch starts the new model cold (a model coming back
after a switch is cold too: caches expire, and this errs on the side of the switch costing more).
Turn t of a conversation is *warm* when its model also served turn t-1. Re-pricing the recorded
tokens for another model sequence changes only turns whose warmth changes:
- recorded cold, now warm: the turn reads from the cache what turn t-1 left in it,
  read' = max(read, min(prompt, read[t-1] + write[t-1])); those tokens come out of the writes first;
- recorded warm, now cold: nothing is read; what was read is written again (write' = write + read).
Token counts stay as recorded; only their split between fresh, read and written input moves.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, did_you_mean
from ..turn.ledger import Usage

__all__ = ["PRICES_ENV", "PriceMap", "cache_split", "flipped", "litellm_price_map", "price_table"]


PRICES_ENV = "LWFSM_PRICES"  # a JSON file of prices of one's own, over LiteLLM's (a self-hosted model, a deal)
_PRICE_FIELDS = ("input_cost_per_token", "output_cost_per_token")
_OPTIONAL_FIELDS = ("cache_read_input_token_cost", "cache_creation_input_token_cost", "supports_prompt_caching")


def price_table(env: Mapping[str, str] | None = None) -> Mapping[str, Mapping[str, Any]]:
    """LiteLLM's price map with the prices of the file `LWFSM_PRICES` names over it; ConfigError naming
    the file, and the model and field, for a file that is not one."""
    env = os.environ if env is None else env
    own = _own_prices(env[PRICES_ENV]) if env.get(PRICES_ENV) else {}
    try:
        base = litellm_price_map()
    except ImportError:
        if not own:
            raise
        base = {}  # every model priced is the user's own: LiteLLM's map is not needed
    # field by field: a price restated or negotiated keeps what LiteLLM knows besides (its cache prices)
    merged = {model: {**base.get(model, {}), **entry} for model, entry in own.items()}
    for model, entry in merged.items():
        if entry.get("supports_prompt_caching") and entry.get("cache_read_input_token_cost") is None:
            raise ConfigError(
                f"{PRICES_ENV}={env[PRICES_ENV]}: model {model!r} caches prompts (supports_prompt_caching) and has no "
                "cache_read_input_token_cost: every cached read would be unpriced; give that price"
            )
    return {**base, **merged}


def _own_prices(path: str) -> dict[str, dict[str, Any]]:
    where = f"{PRICES_ENV}={path}"
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read it: {exc.strerror or exc}") from None
    except ValueError as exc:  # JSONDecodeError: with its line and column
        raise ConfigError(f"{where}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f'{where}: expected an object of models, e.g. {{"openai/my-model": {_EXAMPLE}}}')
    for model, entry in data.items():
        at = f"{where}: model {model!r}"
        if model != model.strip() or not model:
            raise ConfigError(f"{at}: a model is named as the trace names it, with no space around it")
        if not isinstance(entry, dict):
            raise ConfigError(f"{at}: expected an object of prices, e.g. {_EXAMPLE}")
        for name in entry:
            if name not in (*_PRICE_FIELDS, *_OPTIONAL_FIELDS, "litellm_provider"):
                fields = [*_PRICE_FIELDS, *_OPTIONAL_FIELDS]
                raise ConfigError(
                    f"{at}: unknown field {name!r}{did_you_mean(name, fields)}; fields: {', '.join(fields)}"
                )
        for name in (*_PRICE_FIELDS, *_OPTIONAL_FIELDS[:2]):
            value = entry.get(name)
            if value is None and name not in _PRICE_FIELDS:
                continue
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
                raise ConfigError(f"{at}: {name} must be dollars per token, from 0 to 1, got {value!r}")
        if not isinstance(entry.get("supports_prompt_caching", False), bool):
            raise ConfigError(f"{at}: supports_prompt_caching must be true or false")
    return data


_EXAMPLE = '{"input_cost_per_token": 2e-07, "output_cost_per_token": 8e-07}'


@functools.lru_cache(maxsize=1)  # the file a package ships does not change under a process (26 ms a read)
def litellm_price_map() -> Mapping[str, Mapping[str, Any]]:
    """LiteLLM's price map, read from the data file its package ships (never fetched). LiteLLM itself is
    not imported: that takes seconds and configures it as a side effect."""
    import importlib.util

    found = importlib.util.find_spec("litellm")  # a top-level package is located, not imported
    for folder in found.submodule_search_locations or [] if found else []:
        path = Path(folder) / "model_prices_and_context_window_backup.json"
        if path.is_file():
            with path.open("rb") as f:
                return _with_aliases(json.load(f))
    raise ImportError("pricing needs LiteLLM's price map: pip install 'lwfsm[litellm]'")


def _with_aliases(table: dict[str, Any]) -> dict[str, Any]:
    """The map with its alias rows resolved as LiteLLM serves them: a row `alias_of` another is that row;
    names in a row's `aliases` list find the row too (a name that is an entry of its own keeps it)."""
    out = dict(table)
    for name, entry in table.items():
        target = entry.get("alias_of") if isinstance(entry, dict) else None
        if isinstance(target, str) and isinstance(table.get(target), dict) and "alias_of" not in table[target]:
            out[name] = table[target]
    for entry in table.values():
        aliases = entry.get("aliases") if isinstance(entry, dict) else None
        for alias in aliases if isinstance(aliases, list) else []:
            if isinstance(alias, str) and alias not in table:
                out.setdefault(alias, entry)
    return out


class PriceMap:
    """Prices per token kind, from a LiteLLM-style price map (LiteLLM's own when none is given)."""

    def __init__(self, table: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self._table = table
        self._cache: dict[str, tuple[float, float, float | None, float] | None] = {}

    @property
    def table(self) -> Mapping[str, Mapping[str, Any]]:
        if self._table is None:
            self._table = price_table()
        return self._table

    def entry(self, model: str) -> Mapping[str, Any] | None:
        """The model's entry; 'provider/name' also finds 'name' when the entry is that provider's."""
        table = self.table
        if model in table:
            return table[model]
        provider, sep, name = model.partition("/")
        if sep and name in table and table[name].get("litellm_provider") == provider:
            return table[name]
        return None

    def rates(self, model: str) -> tuple[float, float, float | None, float] | None:
        """(input, output, cache read or None, cache write) dollars per token; None: no price."""
        if model in self._cache:
            return self._cache[model]
        e = self.entry(model)
        out: tuple[float, float, float | None, float] | None = None
        if e is not None and e.get("input_cost_per_token") is not None and e.get("output_cost_per_token") is not None:
            inp, outp = float(e["input_cost_per_token"]), float(e["output_cost_per_token"])
            read = e.get("cache_read_input_token_cost")
            if read is None and not e.get("supports_prompt_caching"):
                read = inp
            write = e.get("cache_creation_input_token_cost")
            out = (inp, outp, None if read is None else float(read), inp if write is None else float(write))
        self._cache[model] = out
        return out

    def price(self, model: str, usage: Usage) -> float | None:
        """Dollars for one call; None when the model (or a token kind it used) has no price."""
        r = self.rates(model)
        if r is None or usage.unreported:  # tokens the provider did not report are not guessed at
            return None
        inp, outp, read, write = r
        if usage.cache_read_tokens and read is None:
            return None
        fresh = max(0, usage.prompt_tokens - usage.cache_read_tokens - usage.cache_write_tokens)
        return (
            fresh * inp
            + usage.cache_read_tokens * (read or 0.0)
            + usage.cache_write_tokens * write
            + usage.completion_tokens * outp
        )

    __call__ = price  # a `lwfsm.turn.ledger.Pricer`


def flipped(prompt: int, read: int, write: int, was_warm: bool, cached_before: int) -> tuple[int, int]:
    """(cache read, cache write) of a turn whose warmth is flipped (see the module doc): warm made cold
    reads nothing and writes what it read; cold made warm reads what the turn before left in the cache
    (`cached_before`: its reads plus writes), taken out of the writes first."""
    if was_warm:
        return 0, write + read
    now = max(read, min(prompt, cached_before))
    return now, min(max(0, write - (now - read)), prompt - now)


def cache_split(usages: Sequence[Usage], recorded: Sequence[str], models: Sequence[str]) -> list[Usage]:
    """One conversation's usages as they would have been had `models[t]` served turn t (see module doc)."""
    out: list[Usage] = []
    for t, u in enumerate(usages):
        was_warm = t > 0 and recorded[t] == recorded[t - 1]
        now_warm = t > 0 and models[t] == models[t - 1]
        if was_warm == now_warm:
            out.append(u)
            continue
        before = usages[t - 1].cache_read_tokens + usages[t - 1].cache_write_tokens if t else 0
        read, write = flipped(u.prompt_tokens, u.cache_read_tokens, u.cache_write_tokens, was_warm, before)
        out.append(u.model_copy(update={"cache_read_tokens": read, "cache_write_tokens": write}))
    return out
