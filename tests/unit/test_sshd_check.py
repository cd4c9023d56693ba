"""The pieces of ``check``'s sshd questions that need no sshd: reading the
snippet's Match block, comparing its values with ``sshd -T``'s, and leaving
the snippet out of sshd_config's Include lines (the real sshd answers are in
tests/system/test_login.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import REPOSITORY

from provbackup.actions.sshd_check import (
    config_without,
    describe_change,
    in_effect,
    match_settings,
    other_users,
)

SHIPPED = REPOSITORY / "examples" / "sshd_config.d" / "provbackup.conf"


def test_the_shipped_snippets_match_block_is_read_without_its_comments() -> None:
    settings = match_settings(SHIPPED.read_text())
    assert settings[:2] == [("disableforwarding", "yes"), ("allowtcpforwarding", "no")]
    assert ("permitopen", "none") in settings and ("permittty", "no") in settings
    # The Sepiola lines are commented out in the shipped file.
    assert all(key not in ("passwordauthentication", "pubkeyacceptedalgorithms")
               for key, _ in settings)  # fmt: skip


def test_only_the_first_match_block_counts_and_lines_above_it_do_not() -> None:
    text = (
        "X11Forwarding no\n# Match User nobody\nMatch User 1*\n  PermitTTY=no\n"
        "  PubkeyAcceptedKeyTypes +ssh-dss # Sepiola\nMatch all\n  PermitTTY yes\n"
    )
    assert match_settings(text) == [("permittty", "no"), ("pubkeyacceptedalgorithms", "+ssh-dss")]
    assert match_settings("X11Forwarding no\n") == []


def test_values_are_compared_as_sshd_shows_them() -> None:
    assert in_effect("No", ["no"])
    assert not in_effect("no", ["yes"])
    assert in_effect("LC_*", ["LANG", "LC_*"])
    assert in_effect("+ssh-dss", ["ssh-ed25519,ssh-dss"])
    assert not in_effect("+ssh-dss", ["ssh-ed25519,rsa-sha2-512"])
    assert in_effect("-ssh-rsa", ["ssh-ed25519"])
    assert not in_effect("-ssh-rsa", ["ssh-rsa,ssh-ed25519"])
    assert in_effect("^ssh-dss", ["ssh-dss,ssh-ed25519"])
    assert not in_effect("^ssh-dss", ["ssh-ed25519,ssh-dss"])


def test_the_snippet_is_left_out_of_the_include_lines_in_place(tmp_path: Path) -> None:
    included = tmp_path / "sshd_config.d"
    included.mkdir()
    for name in ("00-local.conf", "provbackup.conf", "zz-late.conf", ".hidden.conf"):
        (included / name).write_text("")
    snippet = included / "provbackup.conf"
    main = f"Port 22\nInclude {included}/*.conf\nUsePAM yes\n"
    assert config_without(main, snippet) == (
        f'Port 22\nInclude "{included}/00-local.conf"\nInclude "{included}/zz-late.conf"\n'
        "UsePAM yes\n"
    )
    alone = f'include = "{snippet}"\nX11Forwarding yes\n'
    assert config_without(alone, snippet) == "\nX11Forwarding yes\n"
    assert config_without(f"Include {included}/00-*.conf\n", snippet) is None
    assert config_without("Port 22\n", snippet) is None


def test_a_change_names_the_items_of_a_list() -> None:
    assert describe_change("permittty", ["yes"], ["no"]) == "permittty yes -> no"
    assert describe_change("pubkeyacceptedalgorithms", ["a,b"], ["a,b,ssh-dss"]) == (
        "pubkeyacceptedalgorithms +ssh-dss"
    )
    assert describe_change("acceptenv", ["LANG", "LC_*"], []) == "acceptenv LANG LC_* -> -"


def test_root_and_the_operator_are_asked_about(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUDO_USER", "alice")
    assert other_users() == ["root", "alice"]
    monkeypatch.setenv("SUDO_USER", "root")
    assert other_users() == ["root"]
    monkeypatch.delenv("SUDO_USER")
    assert other_users() == ["root"]
