"""The README's prerequisites line is the one CI installs and the tests name when a tool is missing."""

from __future__ import annotations

import re

from tests.support import PREREQUISITES, ROOT


def packages(line: str) -> set[str]:
    return {
        w for w in line.split() if not w.startswith("-") and w not in {"sudo", "apt-get", "install"}
    }


def test_readme_gives_the_prerequisites_line() -> None:
    assert PREREQUISITES in (ROOT / "README.md").read_text()


def test_ci_installs_exactly_the_prerequisites() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    match = re.search(r"apt-get install[^\n]*?((?:\\\n[^\n]*)*)\n", ci)
    assert match, ".ci/run does not run apt-get install"
    installed = packages(match.group(0).replace("\\\n", " ").replace(">/dev/null", ""))
    assert installed == packages(PREREQUISITES)


OUTSIDE = "../" + "shared"
"""The folder beside a developer's checkout, which a user's clone does not have (spelled in two
parts so that this file does not match itself)."""


def test_nothing_refers_to_a_directory_outside_the_repository() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for pattern in ("*.py", "*.md", "*.yaml", "*.yml", "Makefile", "*.toml")
        for path in ROOT.rglob(pattern)
        if ".venv" not in path.parts and OUTSIDE in path.read_text(errors="replace")
    ]
    assert offenders == []
