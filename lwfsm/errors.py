"""Every error lwfsm raises, in one tree.

LwfsmError
├── SpecError              the spec author's mistake; carries every located SpecIssue
├── Unsaturable            `lwfsm check` cannot explore the spec exhaustively; says why and where
│   └── TooLarge               it could, but over the configuration limit; names the counter or param
├── TraceError             a recorded trace not in the record format; every `file:line: ...` found
├── ConfigError            a wrong model binding or environment variable; names the variable
├── DiagramError           a diagram that cannot be drawn here (e.g. the `diagrams` extra is missing)
└── RunError               something went wrong while running a valid spec
    ├── TransitionNotAllowed   an event with no transition from the current configuration
    ├── SnapshotError          a snapshot or conversation state that does not belong to this engine
    ├── SessionBusy            a call on a conversation whose previous call is still open (a stream)
    ├── Conflict               every compare-and-set attempt lost to other writers (lwfsm.turn.loop)
    ├── StoreError             a session store that cannot be used (bad URL, unreachable, corrupt or
    │                          foreign row); names the store without its password, and the session
    └── ProviderError          a model call failed (chains the provider's exception)
        ├── AuthError              authentication or permission refused: retrying cannot help
        ├── BadRequestError        the request itself is wrong (unknown model, context window,
        │                          content policy, ...): retrying cannot help
        └── AllAttemptsFailed      every retry on every allowed role failed; .attempts lists them

Every error pickles to an equal one (same type, message and attributes): they cross process
boundaries in the gateway's workers and in test runners.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AllAttemptsFailed",
    "AuthError",
    "BadRequestError",
    "ConfigError",
    "Conflict",
    "DiagramError",
    "LwfsmError",
    "ProviderError",
    "RunError",
    "SessionBusy",
    "SnapshotError",
    "SpecError",
    "SpecIssue",
    "StoreError",
    "TooLarge",
    "TraceError",
    "TransitionNotAllowed",
    "Unsaturable",
    "causes",
    "did_you_mean",
    "unknown",
]


def causes(exc: BaseException, limit: int = 10) -> Iterator[BaseException]:
    """`exc`, then what caused it (`__cause__`, else `__context__`), nearest first: a library's error
    wraps the one that says what went wrong. At most `limit` (a chain can loop)."""
    seen: BaseException | None = exc
    for _ in range(limit):
        if seen is None:
            return
        yield seen
        seen = seen.__cause__ or seen.__context__


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """ " (did you mean 'x'?)" when a known name is close to `name`, else ""."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown(kind: str, name: str, known: Iterable[str]) -> str:
    """The message for a name that is not one of `known`, with a did-you-mean hint."""
    pool = list(known)
    return f"unknown {kind} '{name}'{did_you_mean(name, pool)}; known: {', '.join(pool) or 'none'}"


class LwfsmError(Exception):
    """Root of every error lwfsm raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception pickles only `args`; keyword attributes set in __init__ travel in the state dict.
        return (_rebuild, (type(self), str(self)), self.__dict__)


def _rebuild(cls: type[LwfsmError], message: str) -> LwfsmError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    return err


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


class Unsaturable(LwfsmError):
    """The spec's expressions make counter saturation unsound; `problems` says where and why."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class TooLarge(Unsaturable):
    """The exhaustive check would visit more configurations than allowed; the message says which
    counter or param makes it so."""


class TraceError(LwfsmError):
    """A trace that is not in the record format; `problems` lists every `file:line: ...` found."""

    def __init__(self, problems: list[str], more: int = 0) -> None:
        self.problems = problems
        self.more = more  # problems found but not kept (a reader keeps the first ones only)
        hidden = len(problems) - 20 + more if len(problems) > 20 else more
        super().__init__("\n".join(problems[:20]) + (f"\n(and {hidden} more)" if hidden else ""))


class ConfigError(LwfsmError):
    """A model binding or environment variable that cannot be used; the message names it."""


class DiagramError(LwfsmError):
    """A diagram that cannot be drawn here (e.g. the `diagrams` extra is missing)."""


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


class SessionBusy(RunError):
    """A call on a conversation whose previous call has not finished (its stream is still open), or a
    synchronous call that would wait on its own event loop's thread for an async call under way there."""


class Conflict(RunError):
    """The conversation's state kept changing under a call: every compare-and-set attempt of the
    conversation loop lost (or `TurnCore.settle` got a plan made on an older version)."""


class StoreError(RunError):
    """A session store that cannot be used; `store` is its URL without the password, `session` the id."""

    def __init__(self, message: str, *, store: str | None = None, session: str | None = None) -> None:
        super().__init__(message)
        self.store = store
        self.session = session


class ProviderError(RunError):
    """A model call failed. `role` and `model` say which; the provider's exception is the __cause__."""

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

    def __init__(
        self,
        message: str,
        attempts: list[tuple[str, str, BaseException]],
        *,
        role: str | None = None,
        model: str | None = None,
    ) -> None:
        super().__init__(message, role=role, model=model)
        self.attempts = attempts  # (role, model, exception), in order

    def __reduce__(self) -> tuple[Any, ...]:
        # A provider's exception may hold sockets or responses: keep it where it pickles, else its text.
        state = dict(self.__dict__)
        state["attempts"] = [(r, m, _portable(e)) for r, m, e in self.attempts]
        return (_rebuild, (type(self), str(self)), state)


def _portable(exc: BaseException) -> BaseException:
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
