"""Agent: a name, a description and the skills (handler functions) that serve tasks."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from andon.protocol.wire import Version

Handler = Callable[..., Any]

SKILL_KEY = "andon.skill"
"""Metadata key naming the skill that serves a task (the message's or the request's)."""


class UnknownSkill(LookupError):
    """A task asked for a skill the agent does not have."""

    def __init__(self, wanted: object, known: Sequence[str]) -> None:
        self.wanted = wanted
        self.known = tuple(known)
        names = ", ".join(known) or "none"
        super().__init__(f"unknown skill {wanted!r}: this agent's skills are {names}")


@dataclass(frozen=True, slots=True)
class Skill:
    id: str
    handler: Handler
    name: str
    description: str = ""
    tags: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    extended: bool = False
    """Listed only in the authenticated extended agent card, not the public one."""


@dataclass
class Agent:
    """An agent served by andon.

    Handlers are `async def f(ctx: TaskContext)` or plain `def f(ctx: SyncTaskContext)`
    (run in a thread). A task picks its skill with the metadata key `andon.skill`, in
    the message's metadata or the request's (the request's wins); without it the first
    skill serves it. A skill it does not have is refused when the task is submitted.

    `a2a_versions` are the A2A versions the agent is served in: its card lists only
    their interfaces, and a request in another version answers VersionNotSupported.
    Served in one version only, the card is that version's card exactly (a strict
    1.0 reader finds no 0.3 field in it).

    A skill registered with `extended=True` is listed only in the authenticated extended
    agent card (GetExtendedAgentCard), which the agent then declares in its public card.
    """

    name: str
    description: str = ""
    version: str = "0.1.0"
    skills: list[Skill] = field(default_factory=list)
    a2a_versions: Sequence[str] = (Version.V1_0, Version.V0_3)

    def __post_init__(self) -> None:
        if isinstance(self.a2a_versions, str):
            self.a2a_versions = (self.a2a_versions,)
        known = {v.value for v in Version}
        if not self.a2a_versions or any(v not in known for v in self.a2a_versions):
            raise ValueError(
                f"a2a_versions must name some of {', '.join(sorted(known))}, "
                f"not {list(self.a2a_versions)!r}"
            )
        self.a2a_versions = tuple(Version(v) for v in self.a2a_versions)

    def skill(
        self,
        skill_id: str,
        *,
        name: str | None = None,
        description: str = "",
        tags: Sequence[str] = (),
        examples: Sequence[str] = (),
        extended: bool = False,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.skills.append(
                Skill(
                    skill_id,
                    handler,
                    name or skill_id,
                    description or (handler.__doc__ or "").strip(),
                    tuple(tags),
                    tuple(examples),
                    extended,
                )
            )
            return handler

        return register

    @property
    def has_extended_card(self) -> bool:
        """Whether some skill is for authenticated principals only (an extended card)."""
        return any(skill.extended for skill in self.skills)

    @property
    def skill_ids(self) -> tuple[str, ...]:
        return tuple(skill.id for skill in self.skills)

    def route(self, metadata: Mapping[str, Any]) -> Skill:
        """The skill a task's metadata names, else the first. UnknownSkill when it names
        one this agent lacks (a worker serving another version of the agent)."""
        if not self.skills:
            raise LookupError(f"agent {self.name!r} has no skills")
        wanted = metadata.get(SKILL_KEY)
        if wanted is None:
            return self.skills[0]
        for skill in self.skills:
            if skill.id == wanted:
                return skill
        raise UnknownSkill(wanted, self.skill_ids)
