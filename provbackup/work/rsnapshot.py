"""Check account rsnapshot configurations with ``rsnapshot configtest``, cheaply.

A burst of a thousand accounts must not start perl a thousand times. The
text of an account's rsnapshot.conf is its *shape* (retention, rsync path,
fixed options) with a few per-account fields (paths, group, comment)
substituted. :class:`ConfigTester` configtests each distinct shape once per
run, on a canonical account in a temporary directory, and checks per
account that the text is exactly that shape with only plain field values
substituted. Where a field is not plain (characters rsnapshot might read
differently) or ``strict`` is set, the account's own file is configtested.
"""

from __future__ import annotations

import logging
import re
import shlex
import shutil
import tempfile
from dataclasses import fields as dataclass_fields
from pathlib import Path

from provbackup.closing import Closing
from provbackup.config import RsnapshotConfig
from provbackup.errors import RETURN_RSNAPSHOT, WorkError
from provbackup.plan import AccountPlan, RsnapshotFields, RsnapshotShape, render_rsnapshot_conf
from provbackup.work.commands import run_command, tail

logger = logging.getLogger(__name__)

CONFIGTEST_TIMEOUT = 60.0
# Characters rsnapshot takes literally in a path: it splits lines at tabs and
# uses backup sources in Perl regular expressions, where ( [ { \ $ would not be.
PLAIN_PATH = re.compile(r"/[A-Za-z0-9._/+@,:=~-]*")
PLAIN_GROUP = re.compile(r"[0-9]+")
# The per-account fields, looked up once (check_shape runs for every account of a burst).
FIELDS = dataclass_fields(RsnapshotFields)
# Placeholders that cannot occur in a real field: a field never holds NUL.
SENTINELS = RsnapshotFields(
    comment="\0comment\0",
    snapshot_root="\0snapshot_root\0",
    backup_source="\0backup_source\0",
    lockfile="\0lockfile\0",
    group="\0group\0",
)


def resolve_command(rsnapshot: RsnapshotConfig) -> list[str] | None:
    """Return the argv prefix of ``[rsnapshot] command``, None when it is not installed.

    Raises WorkError (RETURN_RSNAPSHOT) when the command cannot be split.
    """
    try:
        words = shlex.split(rsnapshot.command)
    except ValueError as error:
        raise WorkError(
            f"[rsnapshot] command {rsnapshot.command!r}: {error}", return_value=RETURN_RSNAPSHOT
        ) from None
    found = shutil.which(words[0]) if words else None
    return None if found is None else [found, *words[1:]]


def configtest_file(path: Path, rsnapshot: RsnapshotConfig) -> str:
    """Run ``rsnapshot -c path configtest`` whatever ``[rsnapshot] configtest`` says.

    Returns rsnapshot's output (``Syntax OK``). Raises WorkError
    (RETURN_RSNAPSHOT) with rsnapshot's error line when the test fails or
    rsnapshot is not installed.
    """
    argv = resolve_command(rsnapshot)
    if argv is None:
        raise WorkError(
            f"rsnapshot command {rsnapshot.command!r} not found", return_value=RETURN_RSNAPSHOT
        )
    return _configtest(argv, path)


class ConfigTester(Closing):
    """Configtests account configurations for one run, each shape once.

    Takes ``[rsnapshot]`` and ``strict`` (configtest every account's own
    file too). Use as a context manager, or call :meth:`close`, to remove
    its temporary directory. ``invocations`` counts rsnapshot runs.
    """

    def __init__(self, rsnapshot: RsnapshotConfig, *, strict: bool = False) -> None:
        self.rsnapshot = rsnapshot
        self.strict = strict
        self.invocations = 0
        self._argv: list[str] | None = None
        self._resolved = False
        self._results: dict[str, str | None] = {}
        self._shape_texts: dict[RsnapshotShape, str] = {}
        self._temporary: tempfile.TemporaryDirectory[str] | None = None

    def close(self) -> None:
        """Remove the temporary directory of the canonical accounts."""
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = None

    @property
    def argv(self) -> list[str] | None:
        """The rsnapshot argv prefix, or None when configtests are off or rsnapshot is missing.

        Raises WorkError (RETURN_RSNAPSHOT) when ``configtest = yes`` and
        the command is not found.
        """
        if not self._resolved:
            mode = self.rsnapshot.configtest
            self._argv = None if mode == "no" else resolve_command(self.rsnapshot)
            if self._argv is None and mode == "yes":
                raise WorkError(
                    f"[rsnapshot] configtest = yes but the command {self.rsnapshot.command!r} "
                    "is not found",
                    return_value=RETURN_RSNAPSHOT,
                )
            self._resolved = True
        return self._argv

    def check_shape(self, plan: AccountPlan) -> str:
        """Check the plan's rsnapshot.conf before it is written.

        Configtests its shape unless this run already did, and checks that
        the text is that shape with only the account's fields substituted.
        Returns a line for the step log. Raises WorkError (RETURN_RSNAPSHOT)
        with rsnapshot's error line when the shape fails.
        """
        if self.argv is None:
            reason = "off" if self.rsnapshot.configtest == "no" else "rsnapshot not installed"
            return f"configtest skipped ({reason})"
        shape_text = self._shape_texts.get(plan.rsnapshot_shape)
        if shape_text is None:  # rendered once per shape, not once per account
            shape_text = render_rsnapshot_conf(plan.rsnapshot_shape, SENTINELS)
            self._shape_texts[plan.rsnapshot_shape] = shape_text
        expected = shape_text
        for field in FIELDS:
            value = getattr(plan.rsnapshot_fields, field.name)
            if "\0" in value or "\n" in value or "\t" in value:
                raise WorkError(
                    f"rsnapshot.conf field {field.name} {value!r} holds a control character",
                    return_value=RETURN_RSNAPSHOT,
                )
            expected = expected.replace(getattr(SENTINELS, field.name), value)
        if expected != plan.rsnapshot_conf:
            raise WorkError(
                "rsnapshot.conf differs from its configtested shape beyond the account's fields",
                return_value=RETURN_RSNAPSHOT,
            )
        cached = shape_text in self._results
        if not cached:
            self._results[shape_text] = self._test_shape(plan.rsnapshot_shape)
        failure = self._results[shape_text]
        if failure is not None:
            raise WorkError(failure, return_value=RETURN_RSNAPSHOT)
        return "configtest passed" + (" (shape already tested this run)" if cached else "")

    def wants_file_test(self, plan: AccountPlan) -> bool:
        """Return True if the account's own file must be configtested as well.

        That is in strict mode, or when a path field is not plain (the
        shape test would not speak for it).
        """
        if self.argv is None:
            return False
        values = plan.rsnapshot_fields
        plain = all(
            PLAIN_PATH.fullmatch(path) and "/../" not in path and "/./" not in path
            for path in (values.snapshot_root, values.backup_source, values.lockfile)
        ) and PLAIN_GROUP.fullmatch(values.group)
        return self.strict or not plain

    def test_file(self, path: Path) -> str:
        """Configtest one file; returns rsnapshot's output, raises WorkError when it fails."""
        argv = self.argv
        if argv is None:
            return "configtest skipped"
        self.invocations += 1
        return _configtest(argv, path)

    def _test_shape(self, shape: RsnapshotShape) -> str | None:
        if self._temporary is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="provbackup-configtest-")
        account = Path(self._temporary.name) / f"shape{len(self._results)}"
        home = account / "chroot" / "home" / "canonical"
        (home / "incoming").mkdir(parents=True)
        (home / ".snapshots").mkdir()
        canonical = RsnapshotFields(
            comment="canonical account of a configtest",
            snapshot_root=f"{home}/.snapshots/",
            backup_source=f"{home}/incoming/",
            lockfile=str(account / "rsnapshot.pid"),
            group="65534",
        )
        conf = account / "rsnapshot.conf"
        conf.write_text(render_rsnapshot_conf(shape, canonical), encoding="utf-8")
        try:
            self.test_file(conf)
        except WorkError as error:
            retain = ", ".join(f"{interval} {count}" for interval, count in shape.retain)
            return f"{error} (configuration with retain {retain}, rsync {shape.rsync})"
        return None


def _configtest(argv: list[str], path: Path) -> str:
    result = run_command(
        [*argv, "-c", str(path), "configtest"],
        timeout=CONFIGTEST_TIMEOUT,
        what="rsnapshot configtest",
        return_value=RETURN_RSNAPSHOT,
        merge_output=True,
    )
    if result.returncode != 0:
        errors = [line.strip() for line in result.stdout.splitlines() if "ERROR" in line]
        detail = " | ".join(errors) if errors else tail(result.stdout)
        raise WorkError(f"rsnapshot configtest failed: {detail}", return_value=RETURN_RSNAPSHOT)
    return result.stdout.strip()
