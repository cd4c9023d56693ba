"""How a configuration key is declared, and how a declaration becomes INI keys.

:func:`setting` and :func:`secret` make the dataclass fields of the
sections (:mod:`provbackup.config.sections` holds every declaration);
:func:`keys_of` turns one section's fields into the :class:`Key` values
the reader, the unknown-key check and the man-page test walk.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from provbackup.config import values as v

T = TypeVar("T")


@dataclass(frozen=True)
class Setting:
    """How one field is read from the INI file.

    ``key`` is the INI key ("" means the field's name); ``convert`` turns
    its text into the value; ``required`` makes a missing key an error;
    ``file_key`` names a second key holding the path of a file the secret
    is read from; ``each_of`` makes the field a mapping with one INI key
    per name (the ``[hooks]`` commands).
    """

    convert: Callable[[str], Any]
    doc: str
    key: str = ""
    required: bool = False
    file_key: str | None = None
    each_of: tuple[str, ...] = ()


def setting(
    default: T,
    convert: Callable[[str], Any],
    doc: str,
    *,
    key: str = "",
    required: bool = False,
    file_key: str | None = None,
) -> T:
    """Declare a configuration field: its default, converter and meaning (see Setting).

    Takes the default, the converter of the INI text, the one-line doc
    and the optional INI ``key``, ``required`` and ``file_key``; returns
    the dataclass field (typed as its default, for the class body);
    raises nothing.
    """
    declared = Setting(convert, doc, key=key, required=required, file_key=file_key)
    result: T = field(default=default, metadata={"setting": declared})
    return result


def secret(doc: str, *, key: str = "", file_key: str) -> str | None:
    """Declare a password: given inline under ``key`` or read from the file ``file_key`` names.

    Takes the doc, the inline key and the file key; returns the dataclass
    field (default None, left out of the repr); raises nothing.
    """
    declared = Setting(v.text, doc, key=key, file_key=file_key)
    result: str | None = field(default=None, repr=False, metadata={"setting": declared})
    return result


@dataclass(frozen=True)
class Key:
    """One INI key as declared: section, key, the field it fills, its default and doc.

    ``default`` is ``dataclasses.MISSING`` for keys without a default of
    their own (a password's file, one hook of the hooks mapping).
    """

    section: str
    key: str
    field_name: str
    default: Any
    setting: Setting


def keys_of(section: str, cls: type) -> Iterator[Key]:
    """Yield the INI keys one section's dataclass declares, in declaration order.

    Takes the section's name and its dataclass; returns an iterator of
    :class:`Key` (a field without a :class:`Setting` is filled by the
    reader and yields none; a secret yields its file key too; the hooks
    mapping one key per name); raises nothing.
    """
    for item in dataclasses.fields(cls):
        if "setting" not in item.metadata:  # filled by the reader, not an INI key
            continue
        declared: Setting = item.metadata["setting"]
        if declared.each_of:
            for key in declared.each_of:
                yield Key(section, key, item.name, dataclasses.MISSING, declared)
            continue
        yield Key(section, declared.key or item.name, item.name, item.default, declared)
        if declared.file_key:
            yield Key(section, declared.file_key, item.name, dataclasses.MISSING, declared)
