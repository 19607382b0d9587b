"""Agent: a name, a description and the skills (handler functions) that serve tasks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from andon.protocol.types import Message
from andon.protocol.wire import Version

Handler = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Skill:
    id: str
    handler: Handler
    name: str
    description: str = ""
    tags: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()


@dataclass
class Agent:
    """An agent served by andon.

    Handlers are `async def f(ctx: TaskContext)` or plain `def f(ctx: SyncTaskContext)`
    (run in a thread). A message picks its skill with the metadata key `andon.skill`;
    otherwise the first skill serves it.

    `a2a_versions` are the A2A versions the agent is served in: its card lists only
    their interfaces, and a request in another version answers VersionNotSupported.
    Served in one version only, the card is that version's card exactly (a strict
    1.0 reader finds no 0.3 field in it).
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
                )
            )
            return handler

        return register

    def route(self, message: Message) -> Skill:
        if not self.skills:
            raise LookupError(f"agent {self.name!r} has no skills")
        wanted = (message.metadata or {}).get("andon.skill")
        for skill in self.skills:
            if skill.id == wanted:
                return skill
        return self.skills[0]
