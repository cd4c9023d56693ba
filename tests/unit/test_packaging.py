"""The Debian packaging (debian/) and the units agree with the code, without building.

bin/test-package builds, installs, smoke-tests and purges the real package
(CI); these checks catch the drift that would only show there.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import setuptools

import provbackup

REPOSITORY = Path(__file__).resolve().parents[2]
DEBIAN = REPOSITORY / "debian"
# Debian's package for each install_requires name.
DEBIAN_PACKAGES = {
    "click": "python3-click",
    "defusedxml": "python3-defusedxml",
    "ldap3": "python3-ldap3",
    "tabulate": "python3-tabulate",
}


def control_field(package: str, field: str) -> list[str]:
    """The comma-separated names of ``field`` in ``package``'s stanza of debian/control."""
    stanzas = (DEBIAN / "control").read_text().split("\n\n")
    (stanza,) = [text for text in stanzas if re.search(rf"^Package: {package}$", text, re.M)]
    match = re.search(rf"^{field}:(.*(?:\n .*)*)", stanza, re.MULTILINE)
    assert match is not None, field
    return [item.strip().split()[0] for item in match[1].split(",") if item.strip()]


def test_changelog_version_is_the_code_version():
    first = (DEBIAN / "changelog").read_text().splitlines()[0]
    version = re.fullmatch(r"provbackup \((\S+)-(\d+)\) \S+; urgency=\w+", first)

    assert version is not None, first
    assert version[1] == provbackup.__version__


def test_every_runtime_dependency_is_debians_own_package():
    setup = configparser.ConfigParser()
    setup.read(REPOSITORY / "setup.cfg")
    required = [
        re.split(r"[<>=! ]", line.strip())[0]
        for line in setup["options"]["install_requires"].splitlines()
        if line.strip()
    ]
    depends = control_field("provbackup", "Depends")

    assert sorted(required) == sorted(DEBIAN_PACKAGES)
    assert {DEBIAN_PACKAGES[name] for name in required} <= set(depends)
    recommends = set(control_field("provbackup", "Recommends"))
    assert {"rsnapshot", "rsync", "jailkit", "openssh-server", "quota"} <= recommends


def test_only_the_product_is_packaged():
    setup = configparser.ConfigParser()
    setup.read(REPOSITORY / "setup.cfg")
    include = setup["options.packages.find"]["include"].replace(",", " ").split()
    packages = setuptools.find_packages(str(REPOSITORY), include=include)

    assert "provbackup" in packages
    assert all(name == "provbackup" or name.startswith("provbackup.") for name in packages)
    assert not {"sandbox", "tests", "bench", "schema"} & {name.split(".")[0] for name in packages}


def test_every_unit_runs_the_packaged_binary_and_is_shipped_disabled():
    units = sorted((REPOSITORY / "cron").glob("*.service"))
    assert units, "the service is there"
    for unit in units:
        for line in unit.read_text().splitlines():
            if line.startswith("ExecStart="):
                assert line.startswith("ExecStart=/usr/bin/provbackup "), f"{unit.name}: {line}"
    rules = (DEBIAN / "rules").read_text()
    assert re.search(r"^\tdh_installsystemd .*--no-enable.*--no-start", rules, re.MULTILINE)
    install = (DEBIAN / "provbackup.install").read_text().splitlines()
    assert "cron/*.service lib/systemd/system/" in install
    assert "cron/*.timer lib/systemd/system/" in install


def test_config_is_a_root_only_conffile_and_purge_spares_the_backup_root():
    assert (
        "etc/provbackup.conf etc/provbackup/"
        in (DEBIAN / "provbackup.install").read_text().splitlines()
    )
    assert (
        "chmod 0600 debian/provbackup/etc/provbackup/provbackup.conf"
        in (DEBIAN / "rules").read_text()
    )
    postrm = (DEBIAN / "provbackup.postrm").read_text()
    commands = [line for line in postrm.splitlines() if not line.lstrip().startswith("#")]
    # Only files directly in provbackup's own state and run directories.
    start = commands.index('if [ "$1" = purge ]; then') + 1
    loop = " ".join(" ".join(commands[start : start + 2]).replace("\\", " ").split())
    # The records' directory first, so that its parent is empty when it is removed.
    directories = (
        "/var/lib/provbackup/notify /var/lib/provbackup /run/provbackup/accounts /run/provbackup"
    )
    assert f"for directory in {directories}; do" in loop
    assert any("-mindepth 1 -maxdepth 1 -type f -delete" in line for line in commands)
    assert not any(re.search(r"\brm\b.*-r|/var/backup", line) for line in commands)
