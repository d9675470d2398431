"""Secret values: wrapped so that ``repr``, ``str``, logs and tracebacks never show them."""

from __future__ import annotations

from typing import Any

__all__ = ["Secret", "reveal"]


class Secret:
    """A secret string. ``str()`` and ``repr()`` give ``'***'``; :meth:`reveal` gives the value.

    Two secrets compare equal when their values are; a secret is never equal to a plain string
    (so it cannot be matched by accident in a log filter or a dict lookup).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret value. Call it only where the value is handed to the destination."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, format_spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self) -> Any:
        raise TypeError("Secret values are not picklable")  # keeps them out of caches and state


def reveal(value: Any) -> Any:
    """The plain value of a :class:`Secret`; anything else is returned as is."""
    return value.reveal() if isinstance(value, Secret) else value
