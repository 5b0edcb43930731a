"""The `wattwise` command. Each area registers its own commands from `<area>/cli.py`."""

from __future__ import annotations

import importlib
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
    "wattwise.providers.cli",
    "wattwise.jobmodel.cli",
    "wattwise.schedule.cli",
    "wattwise.executors.cli",
    "wattwise.web.cli",
    "wattwise.cluster.cli",
    "wattwise.monitor.cli",
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


def _recover_crashed_runs() -> None:
    """Runs left `running` by a wattwise killed on this machine are closed as crashed before anything else (one
    `listdir` when there are none, so `wattwise --help` stays fast)."""
    from wattwise.measure.recover_cli import print_recovered
    from wattwise.measure.recovery import recover_on_start

    for item in recover_on_start():
        print_recovered(item)


def main() -> None:
    _recover_crashed_runs()
    try:
        result = app(standalone_mode=False)
        if isinstance(result, int) and result:  # click returns typer.Exit's code in non-standalone mode
            sys.exit(result)
    except WattwiseError as exc:
        from rich.markup import escape

        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # click usage errors carry their own exit code and message
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
