"""The one context-manager shape of the objects that hold something open.

A class with a ``close()`` (a descriptor, a connection, a temporary
directory, a run's work session) inherits :class:`Closing` and is a
context manager that closes it on the way out, exception or not.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Closing:
    """Mixin: ``with obj:`` returns ``obj`` and calls ``obj.close()`` at the end.

    Subclasses define :meth:`close` (twice must be harmless); the mixin
    neither swallows nor replaces an exception.
    """

    def close(self) -> None:
        """Release what the object holds; subclasses define it."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
