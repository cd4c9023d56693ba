"""The click commands, one module each; they parse options and call an action."""

from provbackup.cli.check import check_command
from provbackup.cli.jail import jail_template_command
from provbackup.cli.migrate_engine import migrate_engine_command
from provbackup.cli.notify import notify_command
from provbackup.cli.process import process_command
from provbackup.cli.reset import reset_command
from provbackup.cli.scan import scan_command
from provbackup.cli.show import show_command
from provbackup.cli.snapshot import snapshot_command
from provbackup.cli.watch import watch_command

commands = [
    scan_command,
    process_command,
    show_command,
    reset_command,
    check_command,
    snapshot_command,
    jail_template_command,
    watch_command,
    notify_command,
    migrate_engine_command,
]
