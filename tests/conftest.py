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

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from btrfs_image import IMAGE_PREFIX, BtrfsImage, remove_abandoned_images
from btrfs_image import unavailable as btrfs_unavailable

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


@pytest.fixture(scope="session")
def btrfs_image() -> Iterator[BtrfsImage]:
    """A loop-mounted btrfs with full qgroups for the session; skips where none can be mounted."""
    yield from _btrfs(simple_quotas=False)


@pytest.fixture(scope="session")
def btrfs_simple_image() -> Iterator[BtrfsImage]:
    """A loop-mounted btrfs with simple quotas (kernel 6.7+); skips where there is none."""
    yield from _btrfs(simple_quotas=True)


@pytest.fixture
def btrfs_root(btrfs_image: BtrfsImage, request: pytest.FixtureRequest) -> Path:
    """A fresh directory on the session's btrfs (full qgroups), for one test's backup root."""
    root = btrfs_image.mount / f"{request.node.name[:60]}-{os.getpid()}-{next(_roots)}"
    root.mkdir()
    return root


_roots = itertools.count()


def _btrfs(*, simple_quotas: bool) -> Iterator[BtrfsImage]:
    reason = btrfs_unavailable()
    if reason is not None:
        pytest.skip(reason)
    # Not below pytest's 0700 temporary directory: customers (other uids) must reach the mount.
    remove_abandoned_images(Path(tempfile.gettempdir()))
    directory = Path(tempfile.mkdtemp(prefix=f"{IMAGE_PREFIX}{os.getpid()}-"))
    directory.chmod(0o711)
    image = BtrfsImage(directory, simple_quotas=simple_quotas)
    try:
        image.__enter__()
    except (RuntimeError, OSError) as error:
        image.close()
        shutil.rmtree(directory, ignore_errors=True)
        pytest.skip(f"cannot mount a btrfs image on this machine: {error}")
    try:
        yield image
    finally:
        image.close()
        shutil.rmtree(directory, ignore_errors=True)
