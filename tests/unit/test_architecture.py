"""docs/architecture.md names every module of provbackup/ (issue 21): a newcomer finds each one."""

from __future__ import annotations

import re
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
PACKAGE = REPOSITORY / "provbackup"


def listed_modules() -> set[str]:
    """The module paths given in backquotes in the "Every module" section (not tests')."""
    text = (REPOSITORY / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("\n## Every module\n", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([a-z_/]+\.py)`", section))
    return {path for path in named if not path.startswith("tests/")}


def test_every_module_has_its_line_in_the_architecture_document():
    modules = {path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")}
    assert len(modules) > 60  # the walk found the package
    missing = sorted(modules - listed_modules())
    assert not missing, f"add a line to docs/architecture.md, section 'Every module': {missing}"


def test_the_section_names_no_module_that_does_not_exist():
    gone = sorted(path for path in listed_modules() if not (PACKAGE / path).is_file())
    assert not gone, f"docs/architecture.md names modules that are gone: {gone}"
