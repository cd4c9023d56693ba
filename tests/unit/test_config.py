"""Configuration loading: defaults, every error collected and named, secrets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from provbackup.config import find_config_path, load_config, parse_retain
from provbackup.errors import ConfigError

MINIMAL = """
[ldap]
uri = ldap://127.0.0.1:3890
base_dn = dc=example,dc=org
"""


def write(tmp_path: Path, text: str, name: str = "provbackup.conf") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_minimal_config_gets_documented_defaults(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    assert config.ldap.uris == ("ldap://127.0.0.1:3890",)
    assert config.ldap.start_tls is True
    assert config.ldap.attempts == 3
    assert config.backup.root == Path("/var/backup")
    assert config.backup.layout == "stoney"
    assert config.backup.min_uid == 1000
    assert config.rsnapshot.retain == (("daily", 7), ("weekly", 4), ("monthly", 3))
    assert config.quota.command is None
    assert config.delete.quarantine_days == 7
    assert config.delete.max_per_run == 20


def test_hook_commands_cannot_be_changed_after_loading(tmp_path):
    """The hooks are a mapping inside the frozen config: it must be read-only too."""
    config = load_config(write(tmp_path, MINIMAL + "[hooks]\npre_add = /bin/true\n"))
    assert dict(config.hooks.commands) == {"pre_add": ("/bin/true",)}
    with pytest.raises(TypeError):
        config.hooks.commands["post_delete"] = ("/bin/sh", "-c", "rm -rf /")  # type: ignore[index]
    assert "post_delete" not in config.hooks.commands


def test_every_error_is_collected_with_file_section_and_key(tmp_path):
    path = write(
        tmp_path,
        """
[ldap]
uri = http://example.org
timeout = soon
[backup]
layout = deep
min_uid = -5
[rsnapshot]
retain = daily 7, fortnightly 2
[quota]
command = setquota {uid} {bogus}
""",
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    problems = raised.value.problems
    text = "\n".join(problems)
    assert f"{path}: [ldap] base_dn: is required" in problems
    assert f"{path}: [ldap] uri:" in text and "http://example.org" in text
    assert f"{path}: [ldap] timeout: 'soon'" in text
    assert f"{path}: [backup] layout: 'deep'" in text
    assert f"{path}: [backup] min_uid: '-5'" in text
    assert "fortnightly" in text
    assert "{bogus}" in text or "'bogus'" in text
    assert len(problems) == 7


def test_unknown_section_and_key_get_a_suggestion(tmp_path):
    path = write(tmp_path, MINIMAL + "\nbind_passwd = x\n[quotas]\ncommand = x\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    text = str(raised.value)
    assert "[ldap] bind_passwd: unknown key (did you mean 'bind_password'?)" in text
    assert "[quotas]: unknown section (did you mean 'quota'?)" in text


def test_missing_file_names_it(tmp_path):
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(tmp_path / "nope.conf")


def test_unparsable_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(write(tmp_path, "uri = outside any section\n"))


def test_password_file_readable_by_others_is_refused(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    os.chmod(secret, 0o644)
    path = write(tmp_path, MINIMAL + f"bind_dn = cn=x\nbind_password_file = {secret}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert "[ldap] bind_password_file" in str(raised.value)
    assert "accessible by group or others" in str(raised.value)
    assert "s3cret" not in str(raised.value)
    os.chmod(secret, 0o600)
    assert load_config(path).ldap.bind_password == "s3cret"


def test_group_readable_password_file_is_refused(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    os.chmod(secret, 0o640)
    path = write(tmp_path, MINIMAL + f"bind_dn = cn=x\nbind_password_file = {secret}\n")
    with pytest.raises(ConfigError, match="group or others"):
        load_config(path)


def test_password_is_not_in_repr(tmp_path):
    config = load_config(write(tmp_path, MINIMAL + "bind_dn = cn=x\nbind_password = hunter2\n"))
    assert config.ldap.bind_password == "hunter2"
    assert "hunter2" not in repr(config)


def test_config_path_order(tmp_path, monkeypatch):
    monkeypatch.delenv("PROVBACKUP_CONFIG", raising=False)
    assert find_config_path(None) == Path("/etc/provbackup/provbackup.conf")
    monkeypatch.setenv("PROVBACKUP_CONFIG", str(tmp_path / "env.conf"))
    assert find_config_path(None) == tmp_path / "env.conf"
    assert find_config_path(str(tmp_path / "cli.conf")) == tmp_path / "cli.conf"


def test_retain_parsing_orders_and_drops_zero():
    assert parse_retain("monthly 3, daily=7, hourly 0, yearly 1") == (
        ("daily", 7),
        ("monthly", 3),
        ("yearly", 1),
    )
    with pytest.raises(ValueError):
        parse_retain("daily seven")
    with pytest.raises(ValueError):
        parse_retain("daily 0")


def test_shipped_sample_config_is_valid_apart_from_its_secret_file(tmp_path):
    sample = (Path(__file__).resolve().parents[2] / "etc" / "provbackup.conf").read_text()
    secret = tmp_path / "ldap.secret"
    secret.write_text("pw\n")
    os.chmod(secret, 0o600)
    config = load_config(
        write(tmp_path, sample.replace("/etc/provbackup/ldap.secret", str(secret)))
    )
    assert config.ldap.uris == ("ldap://ldap1.example.com", "ldap://ldap2.example.com")
    assert config.log.syslog is True


def test_quota_template_is_split_without_a_shell(tmp_path):
    config = load_config(
        write(tmp_path, MINIMAL + "[quota]\ncommand = /usr/sbin/setquota -u '{uid}' {quota_kib}\n")
    )
    assert config.quota.command == ("/usr/sbin/setquota", "-u", "{uid}", "{quota_kib}")


def test_inline_password_in_a_readable_config_file_is_warned_about(tmp_path, caplog):
    path = write(tmp_path, MINIMAL + "bind_dn = cn=x\nbind_password = hunter2\n")
    os.chmod(path, 0o644)
    with caplog.at_level("WARNING"):
        config = load_config(path)
    assert config.ldap.bind_password == "hunter2"
    assert "accessible by group or others (mode 0644)" in caplog.text
    assert "hunter2" not in caplog.text
    caplog.clear()
    os.chmod(path, 0o600)
    with caplog.at_level("WARNING"):
        load_config(path)
    assert "accessible" not in caplog.text


def test_max_uid_defaults_to_the_highest_id_and_must_not_be_below_min_uid(tmp_path):
    assert load_config(write(tmp_path, MINIMAL)).backup.max_uid == 4294967294
    path = write(tmp_path, MINIMAL + "[backup]\nmin_uid = 5000\nmax_uid = 4000\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert raised.value.problems == [f"{path}: [backup] max_uid: 4000 is below min_uid 5000"]


def test_every_declared_key_is_read_from_the_file(tmp_path):
    """A value written for any declared key reaches its field (no key is declared but unread)."""
    from provbackup.config import declared_keys

    # One valid non-default value per key kind; each key is written and read back.
    samples = {
        ("ldap", "uri"): ("ldap://a.example", ("ldap://a.example",)),
        ("ldap", "base_dn"): ("dc=example,dc=org", "dc=example,dc=org"),
        ("backup", "max_uid"): ("70000", 70000),
        ("backup", "layout"): ("flat", "flat"),
        ("mail", "from"): ("me@example.org", "me@example.org"),
        ("hooks", "post_delete"): ("/bin/true x", ("/bin/true", "x")),
        ("delete", "max_per_run"): ("3", 3),
    }
    lines: dict[str, list[str]] = {}
    for (section, key), (text, _) in samples.items():
        lines.setdefault(section, []).append(f"{key} = {text}")
    body = "".join(f"[{section}]\n" + "\n".join(keys) + "\n" for section, keys in lines.items())
    config = load_config(write(tmp_path, body))
    fields = {(key.section, key.key): key.field_name for key in declared_keys()}
    for (section, key), (_, expected) in samples.items():
        value = getattr(getattr(config, section), fields[(section, key)])
        if section == "hooks":
            value = value[key]
        assert value == expected, (section, key)
    assert all(key.setting.doc for key in declared_keys()), "every key has its doc"
