"""Property-based tests of the switching rules: every shipped spec against its own reference."""

from pathlib import Path

import pytest
from hypothesis.stateful import invariant

from lwfsm import TransitionRecord
from lwfsm.testing import assert_invariants_hold, spec_machine

from . import references

SPECS = Path(__file__).resolve().parent.parent / "specs"


class LeadWorkerMachine(spec_machine(SPECS / "lead_worker.yaml", references.LeadWorker)):  # type: ignore[misc]
    """The default spec, plus DESIGN.md's promises as named invariants."""

    def start_tracking(self) -> None:
        self.served_since_reset: list[str] = []
        self.worker_failure_streak = 0
        self.fallback_successes: int | None = None  # None: not in fallback

    def observe(self, event: str, served: str, record: TransitionRecord) -> None:
        if not hasattr(self, "served_since_reset") or event == "reset":
            self.start_tracking()
            if event == "reset":
                return
        self.served_since_reset.append(served)
        ok = event == "turn_completed"
        self.worker_failure_streak = self.worker_failure_streak + 1 if served == "worker" and not ok else 0
        if record.source == "fallback":
            assert self.fallback_successes is not None
            self.fallback_successes += ok
            if record.dest != "fallback":
                assert self.fallback_successes == self.params["fallback_turns"], "fallback ended early or late"
                self.fallback_successes = None
        if record.dest == "fallback" and record.source != "fallback":
            self.fallback_successes = 0

    @invariant()
    def worker_never_serves_before_lead_turns(self) -> None:
        served = getattr(self, "served_since_reset", [])
        assert "worker" not in served[: self.params["lead_turns"]]

    @invariant()
    def threshold_worker_failures_bring_the_lead_back(self) -> None:
        if getattr(self, "worker_failure_streak", 0) >= self.params["failure_threshold"]:
            # Read-only: an invariant that changed the tracking would hide the next step's mistakes.
            # The streak restarts in `observe`, on the next turn the worker does not fail.
            assert self.session.state == "fallback"
            assert self.session.role == "lead"

    @invariant()
    def fallback_lasts_exactly_fallback_turns_successes(self) -> None:
        if getattr(self, "fallback_successes", None) is not None:
            assert self.session.state == "fallback"
            assert self.fallback_successes < self.params["fallback_turns"]


TestLeadWorker = LeadWorkerMachine.TestCase
TestStrictRecovery = spec_machine(SPECS / "strict_recovery.yaml", references.StrictRecovery).TestCase
TestPlanning = spec_machine(SPECS / "planning.yaml", references.Planning).TestCase
TestEscalation = spec_machine(SPECS / "escalation.yaml", references.Escalation).TestCase


def test_shipped_spec_invariants_hold_over_random_sequences() -> None:
    for path in sorted(SPECS.glob("*.yaml")):
        assert_invariants_hold(path, max_examples=60)


TestWindow = spec_machine(SPECS / "window.yaml", references.Window).TestCase
TestReviewer = spec_machine(SPECS / "reviewer.yaml", references.Reviewer).TestCase
TestBudget = spec_machine(SPECS / "budget.yaml", references.Budget).TestCase


def test_a_users_property_test_can_run_as_hard_as_lwfsms_own() -> None:
    from hypothesis import settings

    from lwfsm.testing import PROFILES, register_profiles

    register_profiles()  # what a user's conftest.py calls; the profiles are this suite's own
    for name, values in PROFILES.items():
        profile = settings.get_profile(name)
        assert (profile.max_examples, profile.stateful_step_count) == (
            values["max_examples"],
            values["stateful_step_count"],
        )
    assert settings.get_profile("thorough").max_examples == 5000
    strong = settings(settings.get_profile("thorough"), max_examples=7)
    case = spec_machine(SPECS / "window.yaml", references.Window, settings=strong).TestCase
    assert (case.settings.max_examples, case.settings.stateful_step_count) == (7, 120)
    assert (
        spec_machine(SPECS / "window.yaml", references.Window).TestCase.settings.max_examples == settings().max_examples
    )


def test_the_params_a_spec_is_loaded_with_are_drawn() -> None:
    """Params are drawn from each range's first values; a spec loaded with its production values
    (lead_turns=50) had them never drawn, with no word: they are drawn now too."""
    from hypothesis import find
    from hypothesis.errors import NoSuchExample

    from lwfsm import load_spec
    from lwfsm.testing import param_sets

    shipped = load_spec("lead_worker", params={"lead_turns": 50})
    assert find(param_sets(shipped, 6), lambda p: p["lead_turns"] == 50)["lead_turns"] == 50
    assert find(param_sets(shipped, 6), lambda p: p["lead_turns"] == 2)["lead_turns"] == 2  # and the first ones
    with pytest.raises(NoSuchExample):  # without it, 50 is beyond the first values drawn
        find(param_sets(load_spec("lead_worker"), 6), lambda p: p["lead_turns"] == 50)
