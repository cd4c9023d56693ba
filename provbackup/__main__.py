"""The ``provbackup`` command: a click group; errors are caught here, once.

Every :class:`~provbackup.errors.ProvbackupError` becomes one line on
stderr and its exit code; anything else is an internal error (70), with
the traceback only at ``-v``.
"""

from __future__ import annotations

import logging
import sys

import click

from provbackup import __version__
from provbackup.cli import commands
from provbackup.cli.options import Settings
from provbackup.errors import EXIT_SOFTWARE, EXIT_USAGE, ProvbackupError

log = logging.getLogger("provbackup")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="provbackup")
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    envvar="PROVBACKUP_CONFIG",
    help="Configuration file [env PROVBACKUP_CONFIG; default /etc/provbackup/provbackup.conf].",
)
@click.option("-v", "--verbose", count=True, help="Debug detail on stderr, each LDAP search as an ldapsearch line.")
@click.option("-q", "--quiet", count=True, help="Less on stderr: warnings (-q) or errors (-qq).")
@click.option("--log-json", is_flag=True, help="Log to stderr as one JSON object per line.")
@click.pass_context
def cli(context: click.Context, config_path: str | None, verbose: int, quiet: int, log_json: bool):
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


def main(arguments: list[str] | None = None) -> int:
    """Run the command line; returns (and, as a script, exits with) the exit code."""
    try:
        result = cli.main(args=arguments, prog_name="provbackup", standalone_mode=False)
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.exceptions.Abort:
        click.echo("provbackup: aborted", err=True)
        return 1
    except click.ClickException as error:
        error.show()
        return EXIT_USAGE if error.exit_code == 2 else error.exit_code
    except ProvbackupError as error:
        click.echo(f"provbackup: error: {error}", err=True)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("traceback", exc_info=True)
        return error.exit_code
    except Exception as error:
        click.echo(f"provbackup: internal error: {type(error).__name__}: {error}", err=True)
        if log.isEnabledFor(logging.DEBUG):
            log.exception("traceback")
        else:
            click.echo("provbackup: run with -v for the traceback", err=True)
        return EXIT_SOFTWARE
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
