"""The vendored htmx matches the pinned version; README documents every command and setting."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from webapp.cli import demo_command
from webapp.cli import simulate_command
from webapp.commands import APP_COMMANDS
from webapp.config import DEFAULTS
from webapp.web.htmx import htmx_version
from webapp.web.htmx import vendored_htmx_path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_htmx_is_pinned_exactly_and_installed_by_setup():
    package = json.loads((ROOT / "package.json").read_text())
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert package["dependencies"] == {"htmx.org": "2.0.11"}
    assert lock["packages"]["node_modules/htmx.org"]["version"] == htmx_version() == "2.0.11"
    vendored = ROOT / "static" / vendored_htmx_path()
    assert vendored.exists(), "run ./scripts/setup.sh: it copies htmx from npm into static/vendor"
    text = vendored.read_text()
    assert re.search(r'version:\s*"2\.0\.11"', text), "the vendored file is not htmx 2.0.11"


def test_vendored_files_are_not_committed():
    ignored = (ROOT / ".gitignore").read_text().split()
    # No trailing slash on these: a symlink in their place (a worktree's) is ignored too.
    assert {"static/vendor", ".venv", "node_modules/"} <= set(ignored)


@pytest.mark.parametrize(
    "command", sorted({c.name for c in (*APP_COMMANDS, demo_command, simulate_command)})
)
def test_readme_documents_every_command(command):
    assert f"taskdeck {command}" in README


@pytest.mark.parametrize("setting", [k for k in DEFAULTS if k not in ("DEMO",)])
def test_readme_documents_every_setting(setting):
    assert f"TASKDECK_{setting}" in README


def test_readme_gives_the_two_commands():
    assert "make demo" in README and "make test" in README
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()
