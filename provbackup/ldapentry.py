"""One LDAP entry as the server sent it, before the gate (:mod:`provbackup.entry`) reads it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from provbackup.errors import InvalidEntryError


@dataclass(frozen=True)
class LdapEntry:
    """One entry as the server sent it: the DN and string values by attribute.

    ``attributes`` maps lower-cased attribute names to their values.
    """

    dn: str
    attributes: Mapping[str, tuple[str, ...]]

    @classmethod
    def from_values(cls, dn: str, attributes: Mapping[str, Iterable[str]]) -> LdapEntry:
        """Build an entry from any mapping of names to values (names in any case)."""
        return cls(dn, {name.lower(): tuple(values) for name, values in attributes.items()})

    def values(self, name: str) -> tuple[str, ...]:
        """Return every value of attribute ``name`` (no values: empty tuple)."""
        return self.attributes.get(name.lower(), ())

    def optional(self, name: str) -> str | None:
        """Return the one value of ``name``, or None when it has none.

        Raises InvalidEntryError when it has several values.
        """
        values = self.values(name)
        if len(values) > 1:
            raise InvalidEntryError(name, list(values), f"has {len(values)} values, expected one")
        return values[0] if values else None

    def single(self, name: str) -> str:
        """Return the one value of ``name``.

        Raises InvalidEntryError when it has several values or none.
        """
        value = self.optional(name)
        if value is None:
            raise InvalidEntryError(name, None, "is missing")
        return value
