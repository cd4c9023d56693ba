"""``check``'s questions to sshd: what may a backup account do, and whom does the snippet touch?

Three ``sshd -T -C user=...`` views of ``[jail] sshd_config``:

- the sample account's: forwarding must be off and sftp not ``internal-sftp``
  without a chroot (CRITICAL otherwise);
- the same account against the snippet (``[jail] sshd_snippet``): every
  setting of the snippet's ``Match`` block must be in effect for it, or the
  Match line does not match the accounts, the file is not included, or an
  earlier file or Match block sets the same keyword first (CRITICAL);
- root's and the operator's (``SUDO_USER``): their settings must be the
  same as with the snippet left out of the Include lines. sshd ends a Match
  block at the end of the included file (servconf.c restores the including
  file's Match state after each file), so only a Match line that matches
  them, or a line above the Match, changes them (CRITICAL).

sshd cannot be asked (missing, ``-T`` failing): a WARNING, as is a missing
snippet. Nothing here raises.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shlex
import tempfile
from pathlib import Path

from provbackup.config import Config
from provbackup.errors import RETURN_FILESYSTEM, WorkError
from provbackup.work.commands import run_command, tail

logger = logging.getLogger(__name__)

SSHD_TIMEOUT = 30.0
SSHD_DIRECTORY = "/etc/ssh"  # sshd resolves a relative Include here (SSHDIR)
# sshd -T keywords that must read "no" for a backup account (unless DisableForwarding).
FORWARDING = ("allowtcpforwarding", "allowstreamlocalforwarding", "allowagentforwarding",
              "x11forwarding")  # fmt: skip
# Keywords sshd -T prints under another name.
ALIASES = {"pubkeyacceptedkeytypes": "pubkeyacceptedalgorithms",
           "challengeresponseauthentication": "kbdinteractiveauthentication"}  # fmt: skip
INCLUDE = re.compile(r"^\s*include(?:\s*=\s*|\s+)(.*)$", re.IGNORECASE)
MAX_SHOWN = 12  # keywords named in one finding
MAX_VALUE = 40  # characters of a value shown

Settings = dict[str, list[str]]


def check_sshd(config: Config, account: str, critical: list[str], warnings: list[str]) -> None:
    """Ask sshd about ``account``, the snippet and root/the operator; append the findings."""
    main = config.jail.sshd_config
    settings = _effective(config, main, account, warnings)
    if settings is None:
        return
    where = f"sshd -T for {account} ({main})"
    _check_jail_escapes(settings, where, critical)
    snippet = config.jail.sshd_snippet
    try:
        text = snippet.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        warnings.append(f"{snippet}: cannot read the sshd snippet ({error}): "
                        "its Match block not checked")  # fmt: skip
        return
    _check_match_applies(snippet, match_settings(text), settings, where, critical)
    _check_others_unchanged(config, snippet, critical, warnings)


def _check_jail_escapes(settings: Settings, where: str, critical: list[str]) -> None:
    def first(key: str) -> str:
        return settings.get(key, [""])[0].lower()

    if first("disableforwarding") != "yes":
        allowed = [key for key in FORWARDING if first(key) not in ("no", "")]
        if first("permittunnel") not in ("no", ""):
            allowed.append("permittunnel")
        if allowed:
            critical.append(
                f"{where}: {', '.join(allowed)} allowed: ssh -N -D gets past the jail "
                "(install the sshd_config.d/provbackup.conf snippet)"
            )
    sftp = [value for value in settings.get("subsystem", []) if value.split()[:1] == ["sftp"]]
    internal = any("internal-sftp" in value for value in sftp) or "internal-sftp" in first(
        "forcecommand"
    )
    if internal and first("chrootdirectory") in ("none", ""):
        critical.append(
            f"{where}: sftp is internal-sftp without ChrootDirectory: it runs outside the jail "
            "(use Subsystem sftp /usr/lib/openssh/sftp-server)"
        )


def match_settings(text: str) -> list[tuple[str, str]]:
    """Return the (keyword, value) lines of the first Match block of an sshd_config text.

    Keywords are lower-cased (and aliases renamed as ``sshd -T`` prints
    them), values keep their words; comments and blank lines are skipped.
    """
    found: list[tuple[str, str]] = []
    inside = False
    for line in text.splitlines():
        words = line.split("#", 1)[0].strip()
        if not words:
            continue
        keyword, value = _keyword_value(words)
        if keyword == "match":
            if inside:
                break
            inside = True
        elif inside:
            found.append((ALIASES.get(keyword, keyword), value))
    return found


def _keyword_value(words: str) -> tuple[str, str]:
    parts = re.split(r"\s*=\s*|\s+", words, maxsplit=1)
    return parts[0].lower(), (parts[1] if len(parts) > 1 else "").strip()


def in_effect(value: str, shown: list[str]) -> bool:
    """True when the snippet's ``value`` for a keyword is what ``sshd -T`` shows.

    ``+x,y`` (append), ``-x`` (remove) and ``^x`` (put first) are checked
    against the comma-separated list sshd shows; anything else must equal
    one of the shown lines (case and spacing aside).
    """
    lowered = [" ".join(line.lower().split()) for line in shown]
    wanted = " ".join(value.lower().split())
    if wanted[:1] in ("+", "-", "^") and len(lowered) == 1:
        items = lowered[0].split(",")
        names = [name for name in wanted[1:].split(",") if name]
        if wanted[0] == "-":
            return not any(name in items for name in names)
        if wanted[0] == "^":
            return items[: len(names)] == names
        return all(name in items for name in names)
    return wanted in lowered


def _check_match_applies(snippet: Path, wanted: list[tuple[str, str]], settings: Settings,
                         where: str, critical: list[str]) -> None:  # fmt: skip
    if not wanted:
        critical.append(f"{snippet}: no Match block with settings: the accounts get sshd's "
                        "defaults (install the shipped sshd_config.d/provbackup.conf)")  # fmt: skip
        return
    missing = [
        f"{keyword} {value} (sshd: {_short(', '.join(settings[keyword]))})"
        for keyword, value in wanted
        if keyword in settings and not in_effect(value, settings[keyword])
    ]
    if missing:
        critical.append(
            f"{where}: the Match block of {snippet} does not apply: "
            f"{'; '.join(missing[:MAX_SHOWN])} (is the file included by the "
            "sshd_config, does its Match line match the accounts, does an earlier file or "
            "Match block set the same keyword first?)"
        )


def _check_others_unchanged(config: Config, snippet: Path, critical: list[str],
                            warnings: list[str]) -> None:  # fmt: skip
    main = config.jail.sshd_config
    try:
        text = main.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        warnings.append(f"{main}: cannot read ({error}): root's sshd settings not checked")
        return
    without = config_without(text, snippet)
    if without is None:
        return  # not included: the Match check above says so
    try:
        with tempfile.TemporaryDirectory(prefix="provbackup-sshd-") as directory:
            baseline = Path(directory) / "sshd_config"
            baseline.write_text(without, encoding="utf-8")
            _compare_others(config, baseline, snippet, critical, warnings)
    except OSError as error:
        warnings.append(f"cannot write a copy of {main} without {snippet}: {error}")


def _compare_others(config: Config, baseline: Path, snippet: Path, critical: list[str],
                    warnings: list[str]) -> None:  # fmt: skip
    main = config.jail.sshd_config
    for user in other_users():
        now = _effective(config, main, user, warnings)
        before = _effective(config, baseline, user, warnings)
        if now is None or before is None:
            return
        changed = [
            describe_change(key, before.get(key, []), now.get(key, []))
            for key in sorted(now.keys() | before.keys())
            if now.get(key) != before.get(key)
        ]
        if changed:
            critical.append(
                f"sshd -T for {user} ({main}): {snippet} changes its settings: "
                f"{'; '.join(changed[:MAX_SHOWN])} (only the Match block for the "
                "accounts belongs in the snippet, and its Match line must not match "
                f"{user})"
            )


def describe_change(key: str, before: list[str], after: list[str]) -> str:
    """``key before -> after``; for one comma-separated list each, the items added/removed."""
    if len(before) == len(after) == 1 and "," in before[0] + after[0]:
        old, new = before[0].split(","), after[0].split(",")
        items = [f"+{item}" for item in new if item not in old]
        items += [f"-{item}" for item in old if item not in new]
        return f"{key} {','.join(items) or 'reordered'}"
    return f"{key} {_short(' '.join(before) or '-')} -> {_short(' '.join(after) or '-')}"


def _short(value: str) -> str:
    return value if len(value) <= MAX_VALUE else value[: MAX_VALUE - 3] + "..."


def other_users() -> list[str]:
    """Users the snippet must leave alone: root, and the operator running check (SUDO_USER)."""
    users = ["root"]
    operator = os.environ.get("SUDO_USER", "")
    if operator and operator != "root" and re.fullmatch(r"[A-Za-z0-9._-]+", operator):
        users.append(operator)
    return users


def config_without(text: str, snippet: Path) -> str | None:
    """Return the sshd_config ``text`` with ``snippet`` left out of its Include lines.

    Each Include line is replaced by one naming the files its patterns match
    today (relative patterns are under /etc/ssh, as for sshd), in sshd's
    order, less the snippet; lines keep their place, so the Match state
    around them is sshd's. None when no Include line names the snippet or a
    line cannot be rewritten safely.
    """
    lines = text.splitlines()
    dropped = False
    for number, line in enumerate(lines):
        match = INCLUDE.match(line)
        if match is None:
            continue
        try:
            patterns = shlex.split(match.group(1), comments=True)
        except ValueError:
            return None
        files = []
        for pattern in patterns:
            absolute = os.path.join(SSHD_DIRECTORY, pattern)
            files.extend(sorted(glob.glob(absolute)) if glob.has_magic(absolute) else [absolute])
        kept = [name for name in files if not _same_file(name, snippet)]
        if len(kept) == len(files):
            continue
        if any('"' in name or "\\" in name for name in kept):
            return None
        dropped = True
        lines[number] = "".join(f'Include "{name}"\n' for name in kept).rstrip("\n")
    return "\n".join(lines) + "\n" if dropped else None


def _same_file(name: str, snippet: Path) -> bool:
    try:
        return os.path.samefile(name, snippet)
    except OSError:
        return False


def _effective(config: Config, path: Path, user: str, warnings: list[str]) -> Settings | None:
    argv = [config.jail.sshd, "-T", "-f", str(path),
            "-C", f"user={user},host=localhost,addr=127.0.0.1"]  # fmt: skip
    try:
        result = run_command(argv, timeout=SSHD_TIMEOUT, what="sshd -T",
                             return_value=RETURN_FILESYSTEM)  # fmt: skip
    except WorkError as error:
        warnings.append(str(error))
        return None
    if result.returncode != 0:
        warnings.append(
            f"{' '.join(argv)} {result.status_text()}: {tail(result.stderr or result.stdout)}"
        )
        return None
    settings: Settings = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition(" ")
        settings.setdefault(key.lower(), []).append(value.strip())
    return settings
