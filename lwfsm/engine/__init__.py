"""The engine: one compiled `transitions.Machine` per spec, and the sessions that share it."""

from .machine import Engine, LastTransition, Listener, Session, Snapshot, TransitionRecord

__all__ = ["Engine", "LastTransition", "Listener", "Session", "Snapshot", "TransitionRecord"]
