"""What one turn did to the conversation, in the words every counter uses: switch, fallback, technical
fallback. Defined once here; the gateway (control API, /metrics, dashboard) and `lwfsm report` both
call `move`, so their counts of the same conversation agree (README, "Switches and fallbacks").

- a **switch**: the turn's event moved the machine to a state of another role;
- a **fallback**: a switch by a turn event (not one fired by hand) from a state of a cheap role
  (`cheap: true` in the spec) to a state of a role that is not cheap;
- a **technical fallback**: the turn was served by another role than its state's (the role's model
  failed technically and `judging.technical_fallback` served it, or a concurrent call of the
  conversation moved the machine while this call was served). It moves nothing, so it is no switch.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..spec import Spec

__all__ = ["Move", "move"]


@dataclass(frozen=True, slots=True)
class Move:
    switch: bool
    fallback: bool
    technical_fallback: bool


def move(
    spec: Spec, source: str, dest: str, event: str, served_in: str | None = None, served_by: str | None = None
) -> Move:
    """The turn whose `event` took the machine from `source` to `dest`; `served_in` / `served_by`: the
    state and role that served it (None: fired by hand, no model served it)."""
    states, roles = spec.states, spec.roles
    a, b = states[source].role, states[dest].role
    switch = a != b
    fallback = switch and spec.events[event].turn and roles[a].cheap and not roles[b].cheap
    technical = served_in is not None and served_by is not None and served_by != states[served_in].role
    return Move(switch, fallback, technical)
