"""The example ACL of ``examples/slapd-acl.conf``, as the sandbox slapd loads it.

The file is what an operator pastes into slapd.conf; the sandbox reads that
very text (no copy of it lives here) and makes only the two edits the file's
comments tell an operator to make: its DNs use the stoney cloud's suffix,
replaced by the sandbox's, and where the schema defines
``sstProvisioningDate`` (the project's own schema) that attribute is written
next to ``sstProvisioningExecutionDate``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from sandbox.entries import ACCOUNTS_RDNS, BIND_ACCOUNT_RDNS, DEFAULT_SUFFIX
from sandbox.locations import acl_example_path
from sandbox.processes import SandboxError

EXECUTION_DATE = "sstProvisioningExecutionDate"
DOCUMENTED_DATE = "sstProvisioningDate"

DEBIAN_DEFAULT_ACCESS = (
    "access to attrs=userPassword by self write by anonymous auth by * none",
    "access to attrs=shadowLastChange by self write by * read",
    "access to * by * read",
)
"""The rules Debian's slapd package installs, which the example goes in front of."""


def _defines(schema_files: Iterable[Path], attribute: str) -> bool:
    """Return True when one of the schema files defines ``attribute``."""
    pattern = re.compile(rf"NAME\s+(\(\s*)?'{re.escape(attribute)}'", re.IGNORECASE)
    return any(pattern.search(path.read_text(errors="replace")) for path in schema_files)


def acl_text(suffix: str, schema_files: Sequence[Path], path: Path | None = None) -> str:
    """Return the example ACL (``examples/slapd-acl.conf``) edited for a sandbox.

    Args:
        suffix: the sandbox's suffix, replacing the example's ``dc=stoney-cloud,dc=org``.
        schema_files: the schemas slapd loads; when one defines
            ``sstProvisioningDate``, it is added after ``sstProvisioningExecutionDate``
            in the rules (not in the comments).
        path: the ACL file; default :func:`sandbox.locations.acl_example_path`.

    Raises:
        SandboxError: the file no longer names the DNs the sandbox creates.
        FileNotFoundError: the file is missing.
    """
    text = (path or acl_example_path()).read_text()
    for rdns in (ACCOUNTS_RDNS, BIND_ACCOUNT_RDNS):
        if f"{rdns},{DEFAULT_SUFFIX}" not in text:
            raise SandboxError(f"{path or acl_example_path()} does not name "
                               f"{rdns},{DEFAULT_SUFFIX}; the sandbox relies on it")  # fmt: skip
    text = text.replace(DEFAULT_SUFFIX, suffix)
    if _defines(schema_files, DOCUMENTED_DATE):
        lines = [
            line
            if line.lstrip().startswith("#")
            else re.sub(rf"\b{EXECUTION_DATE}\b", f"{EXECUTION_DATE},{DOCUMENTED_DATE}", line)
            for line in text.splitlines()
        ]
        text = "\n".join(lines) + "\n"
    return text


def indexed_attributes(text: str) -> set[str]:
    """Return the attribute names (lower case) that ``index`` lines of slapd.conf text index."""
    names: set[str] = set()
    for match in re.finditer(r"(?im)^index\s+(\S+)", text):
        names.update(name.lower() for name in match.group(1).split(","))
    return names


def indexes_besides(indexes: Iterable[str], text: str) -> list[str]:
    """Return the ``index`` values of ``indexes`` that index nothing ``text`` indexes already.

    slapd refuses a second index line for an attribute, so the sandbox's own
    indexes give way to the example's.
    """
    taken = indexed_attributes(text)
    return [
        index for index in indexes
        if not {name.lower() for name in index.split()[0].split(",")} & taken
    ]  # fmt: skip
