"""The README's examples are tests: its shell session runs, then its Python blocks."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Cli

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.DOTALL)


def run_session(cli: Cli, start: Path) -> None:
    """Run every `$ ...` line of the README's console blocks, in order, as a user would."""
    (start / "examples").symlink_to(ROOT / "examples")
    cwd = start
    lines = [ln[2:] for b in blocks("console") for ln in b.splitlines() if ln.startswith("$ ")]
    assert lines, "the README should show the CLI"
    for line in lines:
        argv = shlex.split(line)
        if argv[0] == "cd":
            cwd = (cwd / argv[1]).resolve()
            continue
        if argv[0] == "python":
            result = subprocess.run(
                [sys.executable, *argv[1:]],
                cwd=cwd,
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
        else:
            assert argv[0] == "conveyor", line
            result = cli(*argv[1:], cwd=cwd)
        assert result.returncode == 0, (line, result.stdout, result.stderr)


def test_readme_session_then_python(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_session(cli, tmp_path)
    monkeypatch.chdir(tmp_path)
    examples = blocks("python")
    assert examples, "the README should show the Python API"
    for code in examples:
        exec(compile(code, str(README), "exec"), {"__name__": "readme"})
