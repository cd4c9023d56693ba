"""``provbackup jail-template``: build the shared jail template, optionally re-apply it."""

from __future__ import annotations

import click

from provbackup.cli.options import Settings, pass_settings


@click.command("jail-template")
@click.argument("directory", required=False, type=click.Path(path_type=str))
@click.option(
    "--apply",
    "apply_all",
    is_flag=True,
    help="Then re-apply the template to every account on disk (links, not copies).",
)
@click.option(
    "--no-build",
    is_flag=True,
    help="Do not rebuild; only re-apply the existing template (with --apply).",
)
@click.option(
    "--wait", type=click.FloatRange(min=0), default=0.0, metavar="SECONDS",
    help="Wait this long for a running process run's lock [default: 0].",
)  # fmt: skip
@pass_settings
def jail_template_command(
    settings: Settings, directory: str | None, apply_all: bool, no_build: bool, wait: float
) -> int:
    """Build the jail template in DIRECTORY [default: [backup] jail_template].

    Runs jailkit's jk_init with [jail] sections and jk_cp with [jail]
    programs into a fresh directory, adds /bin/getQuota, makes everything
    root-owned and read-only for users, checks that sh, echo, cat, ls,
    mkdir, rm, rsync and getQuota run in it (chroot), then puts it in place
    of the old template. Accounts get it on their next add or modify;
    --apply re-links it into every account's jail now. Exits 1 when the
    build or an account failed, 75 while a process run holds the lock.
    """
    from pathlib import Path

    from provbackup.actions.jail import apply_template, build_template
    from provbackup.errors import JailTemplateError, UsageError

    config = settings.load()
    if no_build and not apply_all:
        raise UsageError("--no-build only makes sense with --apply")
    chosen = directory or (
        str(config.backup.jail_template) if config.backup.jail_template else None
    )
    if chosen is None:
        raise UsageError("give the template DIRECTORY or set [backup] jail_template")
    template = Path(chosen)
    if config.backup.jail_template is not None and template != config.backup.jail_template:
        click.echo(
            f"provbackup: note: {template} is not [backup] jail_template "
            f"({config.backup.jail_template}); accounts use the configured one",
            err=True,
        )
    if not no_build:
        report = build_template(config, template, wait=wait)
        verb = "rebuilt" if report.replaced else "built"
        click.echo(f"{verb} jail template {report.directory}: {report.files} files, "
                   f"{report.bytes} bytes")  # fmt: skip
    if apply_all:
        applied = apply_template(config, template, wait=wait)
        click.echo(
            f"applied to {applied.accounts} accounts: {applied.changed} changed, "
            f"{len(applied.failed)} failed"
        )
        for failure in applied.failed:
            click.echo(f"failed   {failure}")
        if applied.failed:
            raise JailTemplateError(f"{len(applied.failed)} accounts failed (see above)")
    return 0
