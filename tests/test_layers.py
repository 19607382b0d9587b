"""The layers of DESIGN.md hold in the code: data flows down, nothing low imports
something high, and the transports reach the runtime only through TaskService.

Every `import` of an andon module is checked, including those inside functions and
under TYPE_CHECKING (a type is a dependency too).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "andon"

# Rank of each part, lowest first: a module may import parts of its rank or below.
RANKS = {
    "protocol": 0,
    # andon.client's wire client speaks the protocol and imports nothing above it, so
    # the runtime may delegate through it (runtime/delegation.py)
    "client.api": 0,
    "client.discover": 0,
    "client.errors": 0,
    "client.sse": 0,
    "client.grpc_transport": 0,
    "grpc_binding.messages": 0,  # the gRPC wire messages: protobuf only
    "telemetry": 0,  # the package itself: a docstring
    "telemetry.tracing": 0,
    "telemetry.logs": 0,
    "store": 1,
    "telemetry.observe": 1,  # the facts the store reports name its records
    "telemetry.metrics": 1,
    "telemetry.hub": 1,
    "runtime": 2,
    "agents": 3,
    "llm": 3,
    "integrations": 3,
    "dispatch": 4,
    "push": 4,  # delivers the push outbox, beside dispatch
    "service": 5,
    "options": 5,  # the andon.* metadata keys the service accepts
    "server": 6,
    "grpc_binding": 6,  # the gRPC transport, beside server/
    "client": 6,
    "node": 7,
    "cli": 7,
    "__main__": 8,
    "testing": 8,  # tools for tests and benchmarks (a fake model server)
    "starter": 7,  # the files `andon init` writes
    "": 8,  # the package's own __init__: the public surface
}
TRANSPORTS = ("server", "grpc_binding", "client")
TRANSPORTS_SEE = {"protocol", "telemetry", "service", *TRANSPORTS}
"""What the server and client packages may import: every operation goes through
TaskService (the client only speaks the protocol)."""


def part_of(module: str) -> str:
    """The RANKS key of a dotted module name under andon (`andon.store.sqlite` → store)."""
    name = module.removeprefix("andon").removeprefix(".")
    for key in sorted(RANKS, key=len, reverse=True):
        if key and (name == key or name.startswith(key + ".")):
            return key
    if name in ("", "__init__"):
        return ""
    raise AssertionError(f"andon.{name} has no layer: add it to RANKS in {__file__}")


def imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            base = node.module
            if base == "andon" or base.startswith("andon."):
                # `from andon.telemetry import tracing` imports a module of the package
                found += [submodule(base, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "andon"]
    return found


def submodule(base: str, name: str) -> str:
    folder = PACKAGE.parent.joinpath(*base.split("."))
    if (folder / f"{name}.py").exists() or (folder / name / "__init__.py").exists():
        return f"{base}.{name}"
    return base


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = [p for p in relative.parts if p != "__init__"]
    return ".".join(parts)


def test_no_module_imports_a_layer_above_its_own() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        own = part_of(module)
        for imported in imports(path):
            other = part_of(imported)
            if RANKS[other] > RANKS[own]:
                wrong.append(f"{module} ({own}) imports {imported} ({other})")
            elif own.split(".")[0] in TRANSPORTS and (other.split(".")[0] not in TRANSPORTS_SEE):
                wrong.append(f"{module} is a transport: it imports {imported}")
    assert wrong == []


def test_every_module_has_a_layer() -> None:
    for path in PACKAGE.rglob("*.py"):
        part_of(module_name(path))
