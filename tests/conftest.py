"""Shared pytest fixtures.

LDAP: one throwaway slapd per test session (``sandbox.Slapd``),
loaded with the project's schema/provbackup.schema and serving TLS
(``slapd.ca_file``, ``slapd.ldaps_uri``; StartTLS on ``slapd.uri``). Tests
use ``ldap_server``, which hands out that server with an empty accounts
tree (``ldap_server.accounts_dn``), restarted first if an earlier test
stopped it. ``stoney_slapd``/``stoney_ldap_server`` are the same against
the stoney cloud's real sst.schema and skip when that file is not found.

Both load the example ACL ``examples/slapd-acl.conf`` (``Slapd(acl=True)``):
``ldap_settings()`` (and so ``support.write_config``) make provbackup bind as
the restricted ``cn=provbackup,ou=services,<suffix>``, with only the rights
that file grants. ``connection()``, ``add_entries()`` and
``support.modify_entry`` act as the directory's administrator (the root DN),
to set up and inspect data.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox import Slapd, stoney_schema_path


def _serve(server: Slapd) -> Iterator[Slapd]:
    """Start a sandbox with its base entries, yield it, always stop it."""
    with server:
        server.add_base()
        yield server


def _fresh(server: Slapd) -> Slapd:
    """Make sure the session server runs and has no accounts left from earlier tests."""
    if not server.is_running():  # a fault test stopped it
        server.start()
    server.add_base()
    server.clear_accounts()
    return server


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """The session slapd: provbackup.schema, TLS, the example ACL; prefer ``ldap_server``."""
    yield from _serve(Slapd(tmp_path_factory.mktemp("slapd"), tls=True, acl=True))


@pytest.fixture
def ldap_server(slapd: Slapd) -> Slapd:
    """The session slapd, running, with an empty ``accounts_dn``."""
    return _fresh(slapd)


@pytest.fixture(scope="session")
def stoney_slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """A session slapd with the stoney cloud's real sst.schema instead of ours."""
    schema = stoney_schema_path()
    if schema is None:
        pytest.skip(
            "stoney schema not found: set PROVBACKUP_STONEY_SCHEMA or put "
            "shared/reference/sst.schema beside the repository"
        )
    yield from _serve(
        Slapd(tmp_path_factory.mktemp("stoney-slapd"), schema_files=[schema], tls=True, acl=True)
    )


@pytest.fixture
def stoney_ldap_server(stoney_slapd: Slapd) -> Slapd:
    """The stoney-schema slapd, running, with an empty ``accounts_dn``."""
    return _fresh(stoney_slapd)
