"""``provbackup watch``: the follower, around :func:`provbackup.actions.watch.watch`.

The batches run under the ``process`` run lifecycle (its lock, per batch,
its status file, its failure mail and fault record:
:func:`provbackup.cli.process.process_lifecycle`), with SIGHUP reloading.
"""

from __future__ import annotations

import logging

import click

from provbackup.cli.options import Settings, pass_settings

log = logging.getLogger(__name__)

# How long a batch waits for the run lock another run (the timer's process) holds.
BATCH_LOCK_WAIT = 10.0


@click.command("watch")
@pass_settings
def watch_command(settings: Settings) -> int:
    """Follow the directory and process due entries as they appear, until SIGTERM.

    Keeps one content-synchronisation search (RFC 4533, OpenLDAP syncprov)
    on [watch] uri (else [ldap] uri) and runs the same batches as
    ``process`` under the same lock; SIGHUP reloads the configuration.
    Exits 0 when stopped by SIGTERM or SIGINT, 78 when the server refuses
    the search (base, filter, no syncprov) at start.
    """
    from provbackup.actions.watch import watch
    from provbackup.cli.process import process_lifecycle
    from provbackup.errors import ConfigError

    try:
        import ldap  # noqa: F401  (python-ldap: the follower's only extra need)

        from provbackup.watch.systemd import notify, watchdog_seconds
    except ImportError:
        raise ConfigError(
            "provbackup watch needs python-ldap: apt install python3-ldap "
            "(or pip install 'provbackup[watch]')"
        ) from None
    config = settings.load()
    lifecycle = process_lifecycle(config, wait=BATCH_LOCK_WAIT, reload=True)
    with lifecycle.command():
        code = watch(
            config, lifecycle, settings.load, clock=lifecycle.clock, notify=notify,
            watchdog_seconds=watchdog_seconds(),
        )  # fmt: skip
    return code
