"""The README's examples are tests: its shell session runs, then its Python blocks."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Cli

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.DOTALL)


def run_session(cli: Cli, start: Path, background: list[subprocess.Popen[str]]) -> None:
    """Run every `$ ...` line of the README's console blocks, in order, as a user would.
    A line ending in `&` (a server) starts in the background and is waited for."""
    (start / "examples").symlink_to(ROOT / "examples")
    cwd = start
    lines = [ln[2:] for b in blocks("console") for ln in b.splitlines() if ln.startswith("$ ")]
    assert lines, "the README should show the CLI"
    for line in lines:
        argv = shlex.split(line)
        if argv[-1] == "&":
            background.append(start_server(argv[:-1], cwd))
            continue
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


def start_server(argv: list[str], cwd: Path) -> subprocess.Popen[str]:
    """`conveyor serve ... &`: started as the user's shell would, ready when /v2/health/ready
    answers on its port (8000 unless the line says otherwise)."""
    import httpx

    assert argv[:2] == ["conveyor", "serve"], argv
    port = argv[argv.index("--port") + 1] if "--port" in argv else "8000"
    log = cwd / f"server-{port}.log"
    with log.open("w") as out:  # a file, not a pipe: a chatty server never blocks on it
        proc = subprocess.Popen(
            [sys.executable, "-m", "conveyor", *argv[1:]],
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).is_success:
                return proc
        time.sleep(0.3)
    proc.kill()
    pytest.fail(f"{' '.join(argv)} was not ready in 120 s:\n{log.read_text()}")


def test_readme_session_then_python(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    servers: list[subprocess.Popen[str]] = []
    try:
        run_session(cli, tmp_path, servers)
        monkeypatch.chdir(tmp_path)
        examples = blocks("python")
        assert examples, "the README should show the Python API"
        for code in examples:
            exec(compile(code, str(README), "exec"), {"__name__": "readme"})
    finally:
        for server in servers:
            server.terminate()
            server.wait(30)
