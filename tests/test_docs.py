"""Documentation is tested like code: every setting and every command is documented, and the
documentation names no command that does not exist (like datasette's test_docs.py)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main

from auditlog.cli.app import app
from auditlog.settings import SECTIONS, env_name

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TEXT = "\n".join(path.read_text("utf-8") for path in DOCS)
# `auditlog <command> [<subcommand>]` in a code span or a code block line; options, placeholders
# and file names that follow are not command words.
MENTION = re.compile(r"(?:^|[`$]\s*|^\s*)auditlog((?: [a-z][a-z0-9-]*)+)", re.MULTILINE)


def _walk(command: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield prefix
    for name, sub in getattr(command, "commands", {}).items():
        yield from _walk(sub, (*prefix, name))


COMMANDS = {path for path in _walk(typer.main.get_command(app)) if path}
GROUPS = {path[:-1] for path in COMMANDS if len(path) > 1}
SETTINGS = [
    env_name(section, f.name) for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)
]


def _mentions(text: str) -> Iterator[tuple[str, ...]]:
    """The command words after each ``auditlog`` in code, as far as they name a command."""
    for match in MENTION.finditer(text):
        words = tuple(match.group(1).split())
        found = words[:1]
        for word in words[1:]:
            found = (*found, word)
            if found not in COMMANDS and found[:-1] not in GROUPS:
                found = found[:-1]  # an argument of a command, e.g. `auditlog export bundle`
                break
            if found not in COMMANDS:
                break  # a group's next word must be one of its commands
        yield found


@pytest.mark.parametrize("name", SETTINGS)
def test_every_setting_is_documented_under_its_environment_name(name: str) -> None:
    assert re.search(rf"\b{name}\b", TEXT), f"{name} is in no README.md or docs/*.md"


@pytest.mark.parametrize("command", sorted(" ".join(c) for c in COMMANDS))
def test_every_command_is_documented(command: str) -> None:
    assert f"auditlog {command}" in TEXT, f"`auditlog {command}` is in no README.md or docs/*.md"


def test_documentation_names_no_command_that_does_not_exist() -> None:
    unknown = {" ".join(m) for m in _mentions(TEXT) if m not in COMMANDS}
    assert not unknown, f"the docs name commands that do not exist: {sorted(unknown)}"


def test_the_check_for_unknown_commands_can_fail() -> None:
    assert ("verify-bundle",) in set(_mentions("run `auditlog verify-bundle x.zip`"))
    assert ("verify-bundle",) not in COMMANDS
    assert ("retention", "purge") in set(_mentions("`auditlog retention purge`"))
    assert set(_mentions("`auditlog retention run --category x` `auditlog verify --bundle B`")) == {
        ("retention", "run"),
        ("verify",),
    }


CODE = sorted(
    [ROOT / "app.py", *ROOT.glob("pages/*.py"), *ROOT.glob("ui/*.py"), *ROOT.glob("src/**/*.py")]
)


@pytest.mark.parametrize("path", CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_pages_and_messages_name_no_command_that_does_not_exist(path: Path) -> None:
    unknown = {" ".join(m) for m in _mentions(path.read_text("utf-8")) if m not in COMMANDS}
    assert not unknown, f"{path.name} names commands that do not exist: {sorted(unknown)}"
