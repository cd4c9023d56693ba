"""The ``provbackup`` command: a click group; errors are caught here, once.

Every :class:`~provbackup.errors.ProvbackupError` becomes one line on
stderr and its exit code; anything else is an internal error (70), with
the traceback only at ``-v``. Commands return their exit code.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import click

from provbackup import __version__
from provbackup.cli import commands
from provbackup.cli.options import Settings
from provbackup.errors import EXIT_SOFTWARE, ProvbackupError

log = logging.getLogger("provbackup")


# Global flags an operator may also type after the command name
# (``provbackup process -q``); they take no value, so moving them is safe.
_MOVABLE_FLAGS = re.compile(r"-v+|-q+|--verbose|--quiet|--log-json")


class ProvbackupGroup(click.Group):
    """A click group that turns errors and returned codes into exit codes."""

    def parse_args(self, context: click.Context, args: list[str]) -> list[str]:
        """Move the global flags -v, -q and --log-json given after the command before it."""
        command_at = next((index for index, word in enumerate(args) if word in self.commands), None)
        if command_at is not None:
            head, tail = args[: command_at + 1], args[command_at + 1 :]
            end = tail.index("--") if "--" in tail else len(tail)
            moved = [word for word in tail[:end] if _MOVABLE_FLAGS.fullmatch(word)]
            kept = [word for word in tail[:end] if not _MOVABLE_FLAGS.fullmatch(word)]
            args = moved + head + kept + tail[end:]
        return super().parse_args(context, args)

    def invoke(self, context: click.Context) -> Any:
        try:
            result = super().invoke(context)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except ProvbackupError as error:
            click.echo(f"provbackup: error: {error}", err=True)
            log.debug("traceback", exc_info=True)
            context.exit(error.exit_code)
        except Exception as error:
            click.echo(f"provbackup: internal error: {type(error).__name__}: {error}", err=True)
            if log.isEnabledFor(logging.DEBUG):
                log.exception("traceback")
            else:
                click.echo("provbackup: run with -v for the traceback", err=True)
            context.exit(EXIT_SOFTWARE)
        if isinstance(result, int) and result:
            context.exit(result)
        return result


@click.group(cls=ProvbackupGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="provbackup")
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    envvar="PROVBACKUP_CONFIG",
    help="Configuration file [env PROVBACKUP_CONFIG; default /etc/provbackup/provbackup.conf].",
)
@click.option(
    "-v", "--verbose", count=True, help="Debug detail on stderr, each LDAP search as ldapsearch."
)
@click.option("-q", "--quiet", count=True, help="Less on stderr: warnings (-q) or errors (-qq).")
@click.option("--log-json", is_flag=True, help="Log to stderr as one JSON object per line.")
@click.pass_context
def cli(
    context: click.Context, config_path: str | None, verbose: int, quiet: int, log_json: bool
) -> None:
    """Provision online-backup accounts on this server from an LDAP directory.

    Entries with sstProvisioningMode add, modify or delete and
    sstProvisioningState 0 are claimed, worked on (account tree, rsnapshot
    configuration, quota) and marked added, modified or deleted.
    """
    from provbackup.logs import setup_logging

    verbosity = verbose - quiet
    setup_logging(verbosity, json_lines=log_json)
    context.obj = Settings(config_path=config_path, verbosity=verbosity)


for command in commands:
    cli.add_command(command)


def main() -> None:
    """Run the command line and exit with the command's exit code."""
    cli.main(prog_name="provbackup")


if __name__ == "__main__":
    main()
