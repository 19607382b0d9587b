"""`andon init [NAME]`: a starter agent and the test of its cancel, written to files."""

from __future__ import annotations

import keyword
from pathlib import Path

TEMPLATES = Path(__file__).parent


def starter_files(name: str, folder: Path) -> dict[Path, str]:
    """The files `andon init NAME` writes in `folder`, and their text. ValueError for a
    name that is no Python module name, or a file that exists already."""
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(
            f"{name!r} cannot be a Python module's name: use letters, digits and _ (e.g. my_agent)"
        )
    files = {
        folder / f"{name}.py": (TEMPLATES / "agent.py.txt").read_text(),
        folder / f"test_{name}.py": (TEMPLATES / "test_agent.py.txt").read_text(),
    }
    for path in files:
        if path.exists():
            raise ValueError(f"{path} exists already: choose another name, or move it away")
    return {path: text.format(name=name) for path, text in files.items()}
