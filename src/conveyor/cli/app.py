"""The `conveyor` command: global options, sub-commands and the one error handler.

Exit codes: 0 success, 1 a check failed or an internal error, 2 bad usage or an error
the user can fix (wrong URL, missing workspace, unreachable service...).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer
from typer.exceptions import TyperException

from conveyor import __version__
from conveyor.cli import (
    data_commands,
    jobs_commands,
    models_commands,
    monitor_commands,
    output,
    runs_commands,
    serve_commands,
    train_commands,
    workspace_commands,
)
from conveyor.cli.state import state
from conveyor.core.errors import ConveyorError

app = typer.Typer(
    name="conveyor",
    help="Conveyor: datasets, training, registry, serving and monitoring in one tool.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        output.print_line(f"conveyor {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    workspace: Annotated[
        Path | None,
        typer.Option(
            "--workspace", "-w", help="Workspace folder (default: CONVEYOR_HOME or search up)."
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    state.workspace = workspace
    state.debug = debug
    from conveyor.core.logs import configure_logging

    configure_logging("debug" if debug else "warning")


app.command()(workspace_commands.init)
app.command()(workspace_commands.status)
app.add_typer(data_commands.app, name="data")
app.add_typer(runs_commands.app, name="runs")
app.add_typer(jobs_commands.app, name="jobs")
app.add_typer(train_commands.app, name="train")
app.add_typer(models_commands.app, name="models")
app.add_typer(monitor_commands.app, name="monitor")
app.command()(serve_commands.serve)
app.command()(serve_commands.predict)
app.add_typer(serve_commands.keys_app, name="keys")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; turn every error into one line and the right exit code.

    Run as the process itself (no `argv`), it leaves with `os._exit` once the exit
    handlers have run: a native thread pool torn down with the interpreter can abort an
    exit that was already decided ("terminate called without an active exception",
    apache/arrow#34314), turning exit code 2 into a crash. Called with `argv`, it raises
    SystemExit as usual.
    """
    try:
        _run(argv)
    except SystemExit as e:
        if argv is not None:
            raise
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, int | None):
            print(e.code, file=sys.stderr)
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing to say
                stream.flush()
        os._exit(code)


def _run(argv: list[str] | None) -> None:
    debug = "--debug" in (argv if argv is not None else sys.argv)
    try:
        result = app(args=argv, standalone_mode=False)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        output.print_error("aborted")
        sys.exit(130)
    except TyperException as e:  # usage errors: unknown command, bad option value...
        show = getattr(e, "show", None)
        if show is not None:
            show()
        else:
            output.print_error(e.message)
        sys.exit(e.exit_code)
    except ConveyorError as e:
        if debug:
            traceback.print_exc()
        output.print_error(str(e))
        sys.exit(e.exit_code)
    except Exception as e:  # noqa: BLE001 - the last guard: a bug must not dump a traceback
        if debug:
            traceback.print_exc()
        output.print_error(
            f"internal error ({type(e).__name__}: {e}); run with --debug and report it"
        )
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)
