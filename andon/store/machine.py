"""The task state machine: which compare-and-set transitions a store accepts."""

from __future__ import annotations

from andon.protocol.types import TaskState

S = TaskState

LEGAL_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    S.SUBMITTED: frozenset({S.WORKING, S.CANCELED, S.REJECTED, S.FAILED}),
    S.WORKING: frozenset(
        {S.INPUT_REQUIRED, S.AUTH_REQUIRED, S.CANCELING, S.COMPLETED, S.FAILED, S.REJECTED}
    ),
    S.INPUT_REQUIRED: frozenset({S.WORKING, S.CANCELING, S.FAILED}),
    S.AUTH_REQUIRED: frozenset({S.WORKING, S.CANCELING, S.FAILED}),
    S.CANCELING: frozenset({S.CANCELED, S.FAILED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELED: frozenset(),
    S.REJECTED: frozenset(),
}


class IllegalTransition(ValueError):
    """A transition the state machine never allows (a bug in the caller, not a race)."""


def check_transition(sources: frozenset[TaskState], target: TaskState) -> None:
    for source in sources:
        if target not in LEGAL_TRANSITIONS[source]:
            raise IllegalTransition(f"{source} -> {target} is not a legal transition")
