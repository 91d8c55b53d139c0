"""Independent references for the shipped specs: DESIGN.md's rules in plain Python (counters and
ifs), sharing no code with lwfsm. Each raises NotAllowed where the spec refuses an event."""


class NotAllowed(Exception):
    pass


class LeadWorker:
    """specs/lead_worker.yaml; strict=True gives specs/strict_recovery.yaml."""

    strict = False

    def __init__(self, params: dict[str, int]) -> None:
        self.lead_turns = params["lead_turns"]
        self.threshold = params["failure_threshold"]
        self.fallback_turns = params["fallback_turns"]
        self.reset()

    def reset(self) -> None:
        self.turns = 0
        self.failures = 0
        self.mode = "lead_initial" if self.lead_turns > 0 else "worker"
        self.fallback_successes = 0

    @property
    def role(self) -> str:
        return "lead" if self.mode in ("lead_initial", "fallback") else "worker"

    def fire(self, event: str) -> None:
        if event == "reset":
            self.reset()
            return
        ok = {"turn_completed": True, "failure": False}[event]
        self.turns += 1
        if self.mode == "lead_initial":
            if self.turns >= self.lead_turns:
                self.mode = "worker"  # the lead's failures were never counted
        elif self.mode == "fallback":
            if ok:
                self.fallback_successes += 1
                if self.fallback_successes == self.fallback_turns:
                    self.mode = "recovery"
        elif ok:
            self.failures = 0
            self.mode = "worker"
        else:
            self.failures += 1
            if self.failures >= self.threshold or (self.strict and self.mode == "recovery"):
                self.mode = "fallback"
                self.failures = 0
                self.fallback_successes = 0


class StrictRecovery(LeadWorker):
    strict = True


class Planning(LeadWorker):
    """specs/planning.yaml: a planner detour from worker or recovery, back to where it started."""

    def __init__(self, params: dict[str, int]) -> None:
        self.max_plan_turns = params["max_plan_turns"]
        super().__init__(params)

    def reset(self) -> None:
        super().reset()
        self.planning_from: str | None = None
        self.plan_turns = 0

    @property
    def role(self) -> str:
        return "planner" if self.planning_from else super().role

    def fire(self, event: str) -> None:
        if event == "reset":
            self.reset()
        elif event == "plan":
            if self.planning_from is None and self.mode in ("worker", "recovery"):
                self.planning_from = self.mode
        elif event == "plan_done":
            if self.planning_from is not None:
                self.mode, self.planning_from = self.planning_from, None
        elif self.planning_from is not None:
            self.turns += 1
            self.plan_turns += 1
            if self.plan_turns >= self.max_plan_turns:
                self.mode, self.planning_from, self.plan_turns = self.planning_from, None, 0
        else:
            super().fire(event)
        if self.planning_from is None:
            self.plan_turns = 0


class Escalation:
    """specs/escalation.yaml: worker -> lead -> expert and back down."""

    def __init__(self, params: dict[str, int]) -> None:
        self.threshold = params["failure_threshold"]
        self.needed = {"lead": params["lead_turns"], "expert": params["expert_turns"]}
        self.reset()

    def reset(self) -> None:
        self.rung, self.failures, self.successes = "worker", 0, 0

    @property
    def role(self) -> str:
        return self.rung

    def move(self, rung: str) -> None:
        self.rung, self.failures, self.successes = rung, 0, 0

    def fire(self, event: str) -> None:
        if event == "reset":
            self.reset()
        elif event == "turn_completed":
            self.failures = 0
            if self.rung != "worker":
                self.successes += 1
                if self.successes >= self.needed[self.rung]:
                    self.move("lead" if self.rung == "expert" else "worker")
        elif event == "failure":
            if self.rung == "expert":
                return
            self.failures += 1
            if self.failures >= self.threshold:
                self.move("lead" if self.rung == "worker" else "expert")
        else:
            raise NotAllowed(event)


class Window(LeadWorker):
    """specs/window.yaml: fallback when k of the worker's last 5 turns failed."""

    def __init__(self, params: dict[str, int]) -> None:
        self.k = params["window_failures"]
        super().__init__({**params, "failure_threshold": self.k})

    def reset(self) -> None:
        super().reset()
        self.last: list[bool] = []  # outcomes of the worker's turns, True = failed

    def fire(self, event: str) -> None:
        if event == "reset":
            self.reset()
            return
        ok = {"turn_completed": True, "failure": False}[event]
        self.turns += 1
        if self.mode == "lead_initial":
            if self.turns >= self.lead_turns:
                self.mode = "worker"
        elif self.mode == "fallback":
            if ok:
                self.fallback_successes += 1
                if self.fallback_successes == self.fallback_turns:
                    self.mode = "recovery"
        else:
            self.last = ([*self.last, not ok])[-5:]
            if sum(self.last) >= self.k:
                self.mode, self.last, self.fallback_successes = "fallback", [], 0
            elif ok:
                self.mode = "worker"


class Reviewer(LeadWorker):
    """specs/reviewer.yaml: turns that are multiples of review_every go to the reviewer when the
    worker would have served them; the worker then carries on."""

    def __init__(self, params: dict[str, int]) -> None:
        self.every = params["review_every"]
        super().__init__(params)

    def reset(self) -> None:
        super().reset()
        self.reviewing = False

    @property
    def role(self) -> str:
        return "reviewer" if self.reviewing else super().role

    def fire(self, event: str) -> None:
        if event != "reset" and self.reviewing:
            self.turns += 1
            self.reviewing, self.mode = False, "worker"
            return
        before = self.mode
        super().fire(event)
        if event != "reset" and self.mode in ("worker", "recovery") and before in ("worker", "recovery"):
            self.reviewing = (self.turns + 1) % self.every == 0


class Budget(LeadWorker):
    """specs/budget.yaml: at most lead_budget lead turns per conversation; force_lead on request."""

    def __init__(self, params: dict[str, int]) -> None:
        self.budget = params["lead_budget"]
        self.forced_turns = params["forced_turns"]
        super().__init__(params)

    def reset(self) -> None:
        super().reset()
        self.used = 0
        self.forced = 0  # forced turns left
        if self.budget == 0:
            self.mode = "worker"

    @property
    def role(self) -> str:
        return "lead" if self.forced else super().role

    def fire(self, event: str) -> None:
        if event == "force_lead":
            if self.mode in ("worker", "recovery") and not self.forced and self.used < self.budget:
                self.forced, self.failures = self.forced_turns, 0
            return
        if event == "reset":
            self.reset()
            return
        if self.role == "lead":
            self.used += 1
        if self.forced:
            self.turns += 1
            self.forced -= 1
            if self.used >= self.budget:
                self.forced = 0
            if not self.forced:
                self.mode = "worker"
            return
        before = self.mode
        super().fire(event)
        if self.used >= self.budget:
            if before == "lead_initial" and self.mode == "lead_initial":
                self.mode = "worker"
            elif self.mode == "fallback" and before == "fallback":
                self.mode = "recovery"
            elif self.mode == "fallback":  # the threshold was reached with no budget left
                self.mode, self.failures = before, 0
