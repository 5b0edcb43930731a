"""The `wattwise` command. Each area registers its own commands from `<area>/cli.py`."""

from __future__ import annotations

import importlib
import os
import sys

import typer

from wattwise import __version__
from wattwise.clitools import console, err_console
from wattwise.errors import WattwiseError

#: modules with a `register(app)` function, in the order their commands appear in --help
COMMAND_MODULES = [
    "wattwise.measure.cli",
    "wattwise.measure.scenario.cli",
    "wattwise.analysis.runs_cli",
    "wattwise.measure.recover_cli",  # `runs recover`
    "wattwise.report.cli",
    "wattwise.analysis.cli",
    "wattwise.integrations.timeline_cli",
    "wattwise.providers.cli",
    "wattwise.providers.model_cli",
    "wattwise.jobmodel.cli",
    "wattwise.schedule.cli",
    "wattwise.closedloop.cli",  # `slurm submit|status|report`
    "wattwise.web.cli",
    "wattwise.cluster.cli",
    "wattwise.monitor.cli",
    "wattwise.integrations.cli",  # `ci`, `runs import`
]

app = typer.Typer(
    name="wattwise",
    help=(
        "Measure, attribute and reduce the energy and carbon of software and compute jobs.\n\n"
        "Start with `wattwise providers` to see what this machine can measure, then "
        "`wattwise measure -- CMD` to measure a command."
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        console.print(f"wattwise {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """wattwise root command."""


for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


def _click_exception_classes() -> tuple[type[Exception], type[Exception]]:
    """click's `ClickException` and `UsageError`, wherever this typer takes click from.

    typer up to 0.2x imports `click`; newer versions vendor it as `typer._click`. Both keep the hierarchy
    BadParameter → UsageError → ClickException, and typer exports BadParameter, so the bases are found on its
    MRO instead of importing either private location.
    """
    by_name = {cls.__name__: cls for cls in typer.BadParameter.__mro__}
    return by_name["ClickException"], by_name["UsageError"]


def _print_usage_error(exc: Exception) -> None:
    """One or two lines: what was wrong, and which --help to read. Never a traceback."""
    from rich.markup import escape

    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    ctx = getattr(exc, "ctx", None)
    command_path = ctx.command_path if ctx is not None else "wattwise"
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True, emoji=False)
    err_console.print(f"See '{escape(command_path)} --help'.", highlight=False, soft_wrap=True, emoji=False)


def _recover_crashed_runs() -> None:
    """Runs left `running` by a wattwise killed on this machine are closed as crashed before anything else (one
    `listdir` when there are none, so `wattwise --help` stays fast)."""
    from wattwise.measure.recover_cli import print_recovered
    from wattwise.measure.recovery import recover_on_start

    for item in recover_on_start():
        print_recovered(item)


def main() -> None:
    click_exception, usage_error = _click_exception_classes()
    _recover_crashed_runs()
    try:
        result = app(standalone_mode=False)
        if isinstance(result, int) and result:  # click returns typer.Exit's code in non-standalone mode
            sys.exit(result)
    except WattwiseError as exc:
        from rich.markup import escape

        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True, emoji=False)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except usage_error as exc:
        _print_usage_error(exc)
        sys.exit(2)
    except click_exception as exc:  # other click errors (e.g. a file argument that cannot be opened)
        _print_usage_error(exc)
        sys.exit(getattr(exc, "exit_code", 1) or 1)
    except Exception as exc:  # a bug or an unforeseen failure: one line for the user, the traceback on request
        if os.environ.get("WATTWISE_DEBUG"):
            raise
        from rich.markup import escape

        err_console.print(f"[bold red]error:[/] {escape(type(exc).__name__)}: {escape(str(exc))}", highlight=False,
                          soft_wrap=True, emoji=False)
        err_console.print("This is not a mistake of yours: run again with WATTWISE_DEBUG=1 for the traceback and "
                          "report it.", highlight=False, soft_wrap=True)
        sys.exit(1)
