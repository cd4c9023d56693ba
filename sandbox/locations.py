"""Where the sandbox finds its programs, schemas and the example ACL.

Everything is looked up in the checkout this package runs from (the sandbox
is not installed: ``schema/`` and ``examples/`` sit at the repository root) and
in Debian's standard places for OpenLDAP.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
"""The checkout holding this package, ``schema/`` and ``examples/``."""

SLAPD_PROGRAM = Path("/usr/sbin/slapd")
SLAPADD_PROGRAM = Path("/usr/sbin/slapadd")
LDAPADD_PROGRAM = "ldapadd"
MODULE_DIRECTORY = Path("/usr/lib/ldap")
DEBIAN_SCHEMA_DIRECTORY = Path("/etc/ldap/schema")
BASE_SCHEMAS = ("core", "cosine", "nis", "inetorgperson")
"""Debian schemas always loaded first (in this order)."""

STONEY_SCHEMA_VARIABLE = "PROVBACKUP_STONEY_SCHEMA"
"""Environment variable naming the stoney cloud ``sst.schema`` file."""


def _repository_file(*parts: str) -> Path:
    """Return ``REPOSITORY_ROOT/parts``; raise FileNotFoundError when it is not a file."""
    path = REPOSITORY_ROOT.joinpath(*parts)
    if not path.is_file():
        raise FileNotFoundError(f"{'/'.join(parts)} not found in the checkout: {path}")
    return path


def provbackup_schema_path() -> Path:
    """Return the path of the project's ``schema/provbackup.schema``.

    Raises:
        FileNotFoundError: the file is not in the checkout this package runs from.
    """
    return _repository_file("schema", "provbackup.schema")


def acl_example_path() -> Path:
    """Return the path of ``examples/slapd-acl.conf``, the example ACL for provbackup's bind DN.

    Raises:
        FileNotFoundError: the file is not in the checkout this package runs from.
    """
    return _repository_file("examples", "slapd-acl.conf")


def base_schema_paths() -> list[Path]:
    """Return Debian's core, cosine, nis and inetorgperson schema files, in load order."""
    return [DEBIAN_SCHEMA_DIRECTORY / f"{name}.schema" for name in BASE_SCHEMAS]


def stoney_schema_path() -> Path | None:
    """Find the stoney cloud's real schema, ``shared/reference/sst.schema``.

    Looks at ``$PROVBACKUP_STONEY_SCHEMA`` first (when set, only there), then
    at ``shared/reference/sst.schema`` in the repository's folder and in each
    folder above it (CI puts ``shared/`` beside the clone, i.e. at
    ``<repo>/../shared``).

    Returns:
        The path of an existing file, or None when there is none.
    """
    configured = os.environ.get(STONEY_SCHEMA_VARIABLE)
    if configured:
        path = Path(configured).expanduser()
        if path.is_file():
            return path.resolve()
        logger.warning("%s=%s: no such file", STONEY_SCHEMA_VARIABLE, configured)
        return None
    for folder in (REPOSITORY_ROOT, *REPOSITORY_ROOT.parents):
        candidate = folder / "shared" / "reference" / "sst.schema"
        if candidate.is_file():
            return candidate
    return None
