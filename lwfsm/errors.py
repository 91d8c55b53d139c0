"""Errors raised by lwfsm.

LwfsmError
├── SpecError              the spec author's mistake; carries every located SpecIssue
├── ConfigError            a wrong model binding or environment variable; names the variable
└── RunError               something went wrong while running a valid spec
    ├── TransitionNotAllowed   an event with no transition from the current configuration
    ├── SnapshotError          a snapshot that does not belong to this engine
    └── ProviderError          a model call failed (chains LiteLLM's exception)
        ├── AuthError              authentication or permission refused: retrying cannot help
        ├── BadRequestError        the request itself is wrong (unknown model, context window,
        │                          content policy, ...): retrying cannot help
        └── AllAttemptsFailed      every retry on every allowed role failed; .attempts lists them
"""

from __future__ import annotations

from dataclasses import dataclass


class LwfsmError(Exception):
    """Root of every error lwfsm raises on purpose."""


@dataclass(frozen=True)
class SpecIssue:
    """One located mistake in a spec."""

    source: str  # file path, or "<text>" / "<dict>" / "<params>"
    line: int | None  # 1-based; None when the mistake has no place in a file
    column: int | None  # 1-based
    key: str  # dotted path of the offending key, e.g. "transitions[3].dest"
    message: str

    def __str__(self) -> str:
        where = self.source
        if self.line is not None:
            where += f":{self.line}:{self.column}"
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} {self.message}"


class SpecError(LwfsmError):
    """A spec that cannot be used; `issues` lists every mistake found, in file order."""

    def __init__(self, issues: list[SpecIssue]) -> None:
        self.issues = sorted(issues, key=lambda i: (i.line or 0, i.column or 0, i.key))
        super().__init__("\n".join(str(i) for i in self.issues))


class ConfigError(LwfsmError):
    """A model binding or environment variable that cannot be used; the message names it."""


class RunError(LwfsmError):
    """A valid spec could not do what was asked at run time."""


class TransitionNotAllowed(RunError):
    """An event that has no transition from the session's current configuration."""

    def __init__(self, message: str, *, event: str, state: str) -> None:
        super().__init__(message)
        self.event = event
        self.state = state


class SnapshotError(RunError):
    """A snapshot that cannot be restored into this engine (other spec, other params, bad values)."""


class ProviderError(RunError):
    """A model call failed. `role` and `model` say which; the LiteLLM exception is the __cause__."""

    def __init__(self, message: str, *, role: str | None = None, model: str | None = None) -> None:
        super().__init__(message)
        self.role = role
        self.model = model


class AuthError(ProviderError):
    """Authentication or permission refused by the provider."""


class BadRequestError(ProviderError):
    """The provider refused the request itself (unknown model, context window, content policy, ...)."""


class AllAttemptsFailed(ProviderError):
    """Every retry on every allowed role failed with a technical error; nothing changed in the session."""

    def __init__(self, message: str, attempts: list[tuple[str, str, BaseException]]) -> None:
        super().__init__(message)
        self.attempts = attempts  # (role, model, exception), in order
