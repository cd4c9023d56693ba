"""The error hierarchy: every error a command can end with carries its exit code.

The entry point (``provbackup.__main__``) catches :class:`ProvbackupError` once
and turns it into one line on stderr and the exit code; anything else is an
internal error (exit 70).
"""

from __future__ import annotations

# Exit codes of every command (SPEC section 3); sysexits.h values where they fit.
EXIT_OK = 0
EXIT_ENTRIES_FAILED = 1
EXIT_USAGE = 2
EXIT_SOFTWARE = 70
EXIT_LDAP_UNAVAILABLE = 69
EXIT_LOCKED = 75
EXIT_CONFIG = 78
# ``process`` ended with the same fault as the run before, already reported
# less than [run] fault_report_interval ago (provbackup.faults): the unit
# counts it as success and the cron line stays quiet; the status file and
# ``check`` still report the fault itself.
EXIT_FAULT_REPEATED = 79
# A ``process`` run stopped by SIGTERM/SIGINT exits with 128 + the signal's
# number (143, 130), as a shell reports a command a signal ended.
SIGNAL_EXIT_BASE = 128


class ProvbackupError(Exception):
    """Base of every error that ends a command with a known exit code."""

    exit_code = EXIT_SOFTWARE


class UsageError(ProvbackupError):
    """The command line asks for something that cannot be done (exit 2)."""

    exit_code = EXIT_USAGE


class ConfigError(ProvbackupError):
    """The configuration is missing or invalid (exit 78).

    ``problems`` lists every problem found, each naming file, section and key.
    """

    exit_code = EXIT_CONFIG

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))

    def __str__(self) -> str:
        if len(self.problems) == 1:
            return self.problems[0]
        return f"{len(self.problems)} configuration errors:\n  " + "\n  ".join(self.problems)


class LdapUnavailableError(ProvbackupError):
    """No LDAP server could be reached or the bind was refused (exit 69)."""

    exit_code = EXIT_LDAP_UNAVAILABLE


class BaseDnMissingError(ProvbackupError):
    """The configured ``[ldap] base_dn`` does not exist on the server (exit 78).

    A search under a missing base finds nothing, which would look like "no work
    to do" while nothing is ever provisioned: it is a configuration error.
    """

    exit_code = EXIT_CONFIG


class LockHeldError(ProvbackupError):
    """Another run holds the run lock (exit 75)."""

    exit_code = EXIT_LOCKED


class FaultRepeatedError(ProvbackupError):
    """A run ended with the fault already reported a moment ago (exit 79).

    Raised from the real error by the run lifecycle (``cli/lifecycle.py``)
    once the status file holds that error; the lifecycle's ``command()``
    turns it into the exit code quietly (it was logged as a warning).
    """

    exit_code = EXIT_FAULT_REPEATED


class NotFoundError(ProvbackupError):
    """The entry asked for does not exist (exit 1)."""

    exit_code = EXIT_ENTRIES_FAILED


class EntriesFailedError(ProvbackupError):
    """One or more entries failed; each was already reported (exit 1)."""

    exit_code = EXIT_ENTRIES_FAILED


class JailTemplateError(ProvbackupError):
    """Building or applying the jail template failed (exit 1)."""

    exit_code = EXIT_ENTRIES_FAILED


# Values written to sstProvisioningReturnValue when the work on an entry fails.
# The attribute holds at most three digits in the stoney schema.
RETURN_INVALID_ENTRY = 10
RETURN_UNSAFE_PATH = 11
RETURN_FILESYSTEM = 20
RETURN_RSNAPSHOT = 30
RETURN_QUOTA = 40
RETURN_HOOK = 50
RETURN_INTERNAL = 99


class EntryError(Exception):
    """The work on one entry failed; the run goes on with the next entry.

    Takes a human message and the ``return_value`` written to
    ``sstProvisioningReturnValue``; ``attribute`` and ``value`` name the
    offending LDAP attribute and value where there is one.
    """

    return_value = RETURN_INTERNAL

    def __init__(
        self,
        message: str,
        *,
        attribute: str | None = None,
        value: object = None,
        return_value: int | None = None,
    ) -> None:
        super().__init__(message)
        self.attribute = attribute
        self.value = value
        if return_value is not None:
            self.return_value = return_value


class InvalidEntryError(EntryError):
    """An attribute of the entry is missing or malformed."""

    return_value = RETURN_INVALID_ENTRY

    def __init__(self, attribute: str, value: object, reason: str) -> None:
        shown = "(missing)" if value is None else repr(value)
        super().__init__(f"{attribute}: {shown}: {reason}", attribute=attribute, value=value)


class UnsafePathError(EntryError):
    """A path derived from or read in the entry leaves the backup root or crosses a symlink."""

    return_value = RETURN_UNSAFE_PATH


class WorkError(EntryError):
    """A step of the work on the server failed (filesystem, rsnapshot, quota, hook)."""

    return_value = RETURN_FILESYSTEM
