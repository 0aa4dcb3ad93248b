"""The ``unetlab`` command: a thin layer over the Python API.

Subcommands live one command (or command group) per module
(``unetlab/cli/<command>.py``) and are imported lazily, so
``unetlab --help`` is fast and a broken optional dependency only affects its own command.
Errors a user caused (:class:`~unetlab.errors.UnetlabError`) print as one paragraph with a
non-zero exit code; ``--debug`` shows the full traceback instead.
"""

from __future__ import annotations

import importlib
import sys
import traceback

import click

from unetlab import __version__
from unetlab.errors import UnetlabError

# command name -> "module:attribute" of a click command or group
COMMANDS: dict[str, str] = {
    "demo": "unetlab.cli.train:demo",
    "plan": "unetlab.cli.plan:plan",
    "train": "unetlab.cli.train:train",
    "evaluate": "unetlab.cli.evaluate:evaluate",
    "predict": "unetlab.cli.predict:predict",
    "export": "unetlab.cli.export:export",
    "bench": "unetlab.cli.bench:bench",
    "summary": "unetlab.cli.summary:summary",
    "data": "unetlab.cli.data:data",
    "serve": "unetlab.cli.serve:serve",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported only when used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="unetlab")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def cli(debug: bool) -> None:
    """unetlab: train, measure and use U-Nets for semantic segmentation."""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    from unetlab.fs.atomic import begin_invocation
    from unetlab.fs.oserrors import is_os_level, os_error

    begin_invocation()  # files of an earlier command in this process are not "ours"
    try:
        try:
            result = cli.main(args=args, prog_name="unetlab", standalone_mode=False)
        except OSError as exc:  # read-only, disk full, a file in the way ...: a clear exit 2
            if not is_os_level(exc):
                raise
            raise os_error(exc, action="complete the command") from exc
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except UnetlabError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"error: {exc.format()}", err=True)
        return 2
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return 130
    except Exception as exc:  # an unexpected failure: short by default, full with --debug
        if debug:
            traceback.print_exc()
        else:
            click.echo(
                f"error: unexpected {type(exc).__name__}: {exc}\n"
                "  What to do: rerun with --debug for the full traceback and report it.",
                err=True,
            )
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
