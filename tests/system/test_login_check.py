"""``check``'s view of the login setup without a running sshd: the jail template,
jk_chrootsh and its ini file (one section applies: user, group, else DEFAULT),
and the verdict it adds to the monitoring line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from provbackup.actions.check import add_findings
from provbackup.actions.login import check_login_setup, wants_login_check
from provbackup.actions.verdict import CheckResult, CheckState
from provbackup.config import BackupConfig, Config, JailConfig, LdapConfig


def make_config(tmp_path: Path, ini: str | None, template: Path | None, **jail: object) -> Config:
    path = tmp_path / "jk_chrootsh.ini"
    if ini is not None:
        path.write_text(ini)
    root = tmp_path / "backup"
    root.mkdir(exist_ok=True)
    return Config(
        source=Path("test"),
        ldap=LdapConfig(uris=("ldap://x",), base_dn="dc=x"),
        backup=BackupConfig(root=root, jail_template=template),
        jail=JailConfig(chrootsh_ini=path, sshd_config=tmp_path / "sshd_config", **jail),
    )


def template_with(tmp_path: Path, *programs: str) -> Path:
    template = tmp_path / "template"
    (template / "usr" / "bin").mkdir(parents=True)
    os.symlink("usr/bin", template / "bin")
    for name in programs:
        (template / "usr" / "bin" / name).write_text("#!/bin/sh\n")
        (template / "usr" / "bin" / name).chmod(0o755)
    return template


def test_a_complete_setup_only_warns_that_no_account_exists_yet(tmp_path: Path) -> None:
    config = make_config(tmp_path, "[DEFAULT]\nrelax_home_owner = 1\n",
                         template_with(tmp_path, "sh", "getQuota"))  # fmt: skip
    findings = check_login_setup(config)
    assert findings.critical == []
    assert any("no account" in line for line in findings.warnings)


@pytest.mark.parametrize(
    "ini",
    [
        None,  # the file is missing: jailkit's built-in defaults do not relax
        "[DEFAULT]\n#relax_home_owner=1\n",
        "[DEFAULT]\nrelax_home_owner = 0\n",
        "[group users]\nrelax_home_owner=1\n",
    ],
)
def test_relax_home_owner_missing_is_critical(tmp_path: Path, ini: str | None) -> None:
    config = make_config(tmp_path, ini, template_with(tmp_path, "sh", "getQuota"))
    findings = check_login_setup(config)
    assert [line for line in findings.critical if "relax_home_owner=1" in line]


def test_a_template_without_getquota_or_missing_is_critical(tmp_path: Path) -> None:
    ini = "[DEFAULT]\nrelax_home_owner=1\n"
    lacking = check_login_setup(make_config(tmp_path, ini, template_with(tmp_path, "sh")))
    assert any("/bin/getQuota" in line for line in lacking.critical)
    missing = check_login_setup(make_config(tmp_path, ini, tmp_path / "nothing"))
    assert any("run provbackup jail-template" in line for line in missing.critical)


def test_a_chrootsh_that_is_not_setuid_root_is_critical(tmp_path: Path) -> None:
    fake = tmp_path / "jk_chrootsh"
    fake.write_text("")
    config = make_config(tmp_path, "[DEFAULT]\nrelax_home_owner=1\n",
                         template_with(tmp_path, "sh", "getQuota"), chrootsh=fake)  # fmt: skip
    assert any("not set-uid root" in line for line in check_login_setup(config).critical)


def test_login_check_runs_with_a_jail_template_unless_switched_off(tmp_path: Path) -> None:
    assert not wants_login_check(make_config(tmp_path, None, None))
    assert wants_login_check(make_config(tmp_path, None, tmp_path))
    assert not wants_login_check(make_config(tmp_path, None, tmp_path, check_login="no"))
    assert wants_login_check(make_config(tmp_path, None, None, check_login="yes"))


def test_findings_raise_the_verdict() -> None:
    ok = CheckResult(CheckState.OK, "no entry needs attention", {"due": "0"})
    clean = add_findings(ok, [], [])
    assert (clean.state, clean.summary) == (ok.state, ok.summary)
    assert clean.perfdata == {"due": "0", "login_problems": "0"}
    warned = add_findings(ok, [], ["fs.protected_hardlinks is 0"])
    assert warned.state == CheckState.WARNING
    critical = add_findings(ok, ["relax_home_owner missing"], ["x"])
    assert critical.state == CheckState.CRITICAL
    assert critical.line().startswith(
        "PROVBACKUP CRITICAL - no entry needs attention; login: relax_home_owner missing; login: x"
    )
    assert critical.perfdata == {"due": "0", "login_problems": "1"}
