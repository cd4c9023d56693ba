"""A throwaway local OpenLDAP server (slapd) for the tests, the demo and the benchmark.

Not part of the installed product: its own package at the top of the
checkout, like python-ldap's slapdtest, using the checkout's ``schema/`` and
``examples/``. One module per job:

- :mod:`sandbox.slapd`: :class:`Slapd`, the server's life cycle, and
  :func:`mirror_pair`, two providers replicating each other (syncprov +
  mirror mode; off by default: one plain server);
  :mod:`sandbox.configuration` writes its ``slapd.conf``,
  :mod:`sandbox.processes` runs and reaps the processes;
- :mod:`sandbox.acl`: the example ACL ``examples/slapd-acl.conf`` as a sandbox
  loads it (``Slapd(..., acl=True)``: provbackup then binds as the restricted
  ``cn=provbackup,ou=services,<suffix>``, see :meth:`Slapd.ldap_settings`);
- :mod:`sandbox.certificates`: throwaway TLS material (trustme);
- :mod:`sandbox.entries`: test data (:func:`account_entry`, the base tree, LDIF);
  :mod:`sandbox.data` loads and clears it;
- :mod:`sandbox.locations`: programs, schemas (:func:`stoney_schema_path`).

A Slapd loads Debian's core, cosine, nis and inetorgperson schemas plus, by
default, the project's own ``schema/provbackup.schema`` (a stoney cloud
subset plus ``sstProvisioningDate``); pass ``schema_files=[stoney_schema_path()]``
to run against the real stoney cloud schema instead (never both: they define
the same OIDs). ``python -m sandbox DIR`` runs one until Ctrl-C.

Every name below is importable from ``sandbox`` itself.
"""

from __future__ import annotations

from sandbox.acl import acl_text
from sandbox.certificates import (
    make_certificate_authority,
    make_server_certificate,
    make_unrelated_certificate_authority,
)
from sandbox.entries import (
    ACCOUNTS_RDNS,
    BIND_ACCOUNT_RDNS,
    DATE_ATTRIBUTES,
    DEFAULT_INTERVALS,
    DEFAULT_SUFFIX,
    Entry,
    account_entry,
    base_entries,
    bind_account_entry,
    entries_to_ldif,
    jailkit_home_directory,
)
from sandbox.locations import (
    BASE_SCHEMAS,
    DEBIAN_SCHEMA_DIRECTORY,
    LDAPADD_PROGRAM,
    MODULE_DIRECTORY,
    SLAPADD_PROGRAM,
    SLAPD_PROGRAM,
    STONEY_SCHEMA_VARIABLE,
    acl_example_path,
    provbackup_schema_path,
    stoney_schema_path,
)
from sandbox.processes import SandboxError, free_port
from sandbox.slapd import (
    DEFAULT_BIND_PASSWORD,
    DEFAULT_INDEXES,
    DEFAULT_ROOT_PASSWORD,
    Slapd,
    mirror_pair,
)

__all__ = [
    "ACCOUNTS_RDNS",
    "BASE_SCHEMAS",
    "BIND_ACCOUNT_RDNS",
    "DATE_ATTRIBUTES",
    "DEBIAN_SCHEMA_DIRECTORY",
    "DEFAULT_BIND_PASSWORD",
    "DEFAULT_INDEXES",
    "DEFAULT_INTERVALS",
    "DEFAULT_ROOT_PASSWORD",
    "DEFAULT_SUFFIX",
    "LDAPADD_PROGRAM",
    "MODULE_DIRECTORY",
    "SLAPADD_PROGRAM",
    "SLAPD_PROGRAM",
    "STONEY_SCHEMA_VARIABLE",
    "Entry",
    "SandboxError",
    "Slapd",
    "account_entry",
    "acl_example_path",
    "acl_text",
    "base_entries",
    "bind_account_entry",
    "entries_to_ldif",
    "free_port",
    "jailkit_home_directory",
    "make_certificate_authority",
    "make_server_certificate",
    "make_unrelated_certificate_authority",
    "mirror_pair",
    "provbackup_schema_path",
    "stoney_schema_path",
]
