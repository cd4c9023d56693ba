"""The message templates: one file per kind and language, checked when they are loaded.

``[notify] templates`` (default ``/etc/provbackup/notify``) holds one
directory per language, named by its tag (``en``, ``de``: two or three
lower-case letters; other names are ignored), each with one file per kind:
``schedule.txt`` (a client host stopped backing up), ``no-backup.txt`` (no
backup ever came), ``quota.txt`` (usage at the level), ``schedule-ok.txt``
and ``quota-ok.txt`` (all good again). A file is a ``Subject:`` line, an
empty line and the body; both may hold the placeholders of
:data:`PLACEHOLDERS` in braces (``{{`` and ``}}`` for a literal brace). An sms
carries the subject line only.

Every file is read and checked at load: a missing file, a missing subject,
an unknown placeholder or a stray brace is a ConfigError (78) naming the
file and the placeholder, before anything is sent. The customer's
preferredLanguage is only ever a key looked up among the directories found,
never part of a path; an unknown or malformed one gets ``[notify] language``.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path

from provbackup.errors import ConfigError

PLACEHOLDERS = ("uid", "host", "last_backup", "days", "missed", "usage", "quota", "percent",
                "level", "added")  # fmt: skip
KINDS = ("schedule", "no-backup", "quota", "schedule-ok", "quota-ok")
LANGUAGE_DIRECTORY = re.compile(r"[a-z]{2,3}")
MAX_TEMPLATE_BYTES = 64 * 1024
MAX_SUBJECT = 200


@dataclass(frozen=True)
class Template:
    """One kind in one language: its subject and body templates and the file they came from."""

    subject: str
    body: str
    path: Path

    def fill(self, values: dict[str, str]) -> tuple[str, str]:
        """The subject (one line, at most :data:`MAX_SUBJECT` characters) and body, filled in."""
        subject = " ".join(self.subject.format(**values).split())[:MAX_SUBJECT]
        return subject, self.body.format(**values)


@dataclass(frozen=True)
class Templates:
    """Every language's templates, and the language used when the customer's is not there."""

    languages: dict[str, dict[str, Template]]
    default: str

    def pick(self, language: str | None) -> str:
        """The language to write in for a customer preferring ``language`` (None: unknown)."""
        return language if language in self.languages else self.default

    def get(self, language: str | None, kind: str) -> Template:
        """The template of ``kind`` in the customer's language or the default one."""
        return self.languages[self.pick(language)][kind]


def load_templates(directory: Path, default: str) -> Templates:
    """Read and check every template under ``directory``; see the module docstring.

    Takes ``[notify] templates`` and ``[notify] language``. Returns the
    :class:`Templates`. Raises ConfigError (78) naming the file (and the
    placeholder) of the first problem, or the directory when the default
    language has none.
    """
    try:
        names = sorted(item.name for item in directory.iterdir() if item.is_dir())
    except OSError as error:
        raise ConfigError(
            f"[notify] templates: cannot list {directory}: {error.strerror or error}"
        ) from None
    languages = {}
    for name in names:
        if LANGUAGE_DIRECTORY.fullmatch(name):
            languages[name] = {kind: _read(directory / name / f"{kind}.txt") for kind in KINDS}
    if default not in languages:
        raise ConfigError(
            f"[notify] language: {default!r}: no templates in {directory / default} "
            f"(found: {', '.join(languages) or 'none'})"
        )
    return Templates(languages, default)


def _read(path: Path) -> Template:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_TEMPLATE_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the template: {error.strerror or error}") from None
    if len(data) > MAX_TEMPLATE_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_TEMPLATE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 ({error})") from None
    first, _, rest = text.partition("\n")
    if not first.startswith("Subject:") or not first.removeprefix("Subject:").strip():
        raise ConfigError(f"{path}: the first line must be 'Subject: ...' (then an empty line)")
    if rest and rest.split("\n", 1)[0].strip():
        raise ConfigError(f"{path}: the Subject line must be followed by an empty line")
    subject = first.removeprefix("Subject:").strip()
    body = rest.partition("\n")[2] if rest else ""
    for part in (subject, body):
        _check(path, part)
    return Template(subject, body, path)


def _check(path: Path, text: str) -> None:
    """Raise ConfigError naming ``path`` and the placeholder when ``text`` cannot be filled."""
    known = ", ".join("{" + name + "}" for name in PLACEHOLDERS)
    try:
        fields = list(string.Formatter().parse(text))
    except ValueError as error:
        raise ConfigError(f"{path}: {error} (write {{{{ and }}}} for a literal brace)") from None
    for _literal, name, spec, conversion in fields:
        if name is None:
            continue
        if name not in PLACEHOLDERS:
            raise ConfigError(f"{path}: unknown placeholder {{{name}}}; known: {known}")
        if spec or conversion:
            raise ConfigError(
                f"{path}: placeholder {{{name}}}: no format or conversion allowed (just {{{name}}})"
            )
