"""The README's examples are tests: its Python blocks and its `$ conveyor` lines run."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.e2e.conftest import Cli

README = Path(__file__).parents[2] / "README.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_python_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    examples = blocks("python")
    assert examples, "the README should show the Python API"
    for code in examples:
        exec(compile(code, str(README), "exec"), {"__name__": "readme"})


def test_cli_examples_run(cli: Cli) -> None:
    commands = [
        line[2:]
        for block in blocks("console")
        for line in block.splitlines()
        if line.startswith("$ ")
    ]
    assert commands, "the README should show the CLI"
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "conveyor"
        result = cli(*argv[1:])
        assert result.returncode == 0, (command, result.stderr)
