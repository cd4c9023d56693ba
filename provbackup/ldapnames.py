"""LDAP names and values, pure: a filter value escaped, DNs compared.

No connection here (that is :mod:`provbackup.directory`): what the
filters, the command layer and the directory share about how a DN or a
filter value is written.
"""

from __future__ import annotations

from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

from provbackup.errors import UsageError


def escape(value: str) -> str:
    """Escape ``value`` for use inside an LDAP filter (RFC 4515).

    Takes any text; returns it with ``*``, ``(``, ``)``, ``\\`` and NUL
    escaped; raises nothing.
    """
    return escape_filter_chars(value)


def normalized_dn(dn: str) -> tuple[tuple[str, str], ...]:
    """Return ``dn`` as comparable (attribute, value) pairs, lower-cased.

    Takes a DN as typed or sent; returns its components, attribute and
    value lower-cased and inner white space folded; raises UsageError when
    ``dn`` is not a valid DN.
    """
    try:
        return tuple(
            (attribute.lower(), " ".join(value.lower().split()))
            for attribute, value, _ in parse_dn(dn, escape=False, strip=True)
        )
    except Exception:
        raise UsageError(f"not a valid DN: {dn!r}") from None


def is_below(dn: str, base_dn: str) -> bool:
    """Tell whether ``dn`` is ``base_dn`` or lies below it.

    Takes two DNs; returns True when ``dn`` ends with ``base_dn``'s
    components (case and spacing aside); raises UsageError when either is
    not a valid DN.
    """
    child, base = normalized_dn(dn), normalized_dn(base_dn)
    return len(child) >= len(base) and child[len(child) - len(base) :] == base
