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
