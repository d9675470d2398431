"""manifest.yaml's ``engine:`` section: where runs deliver (``docs/scale-out.md``).

::

    engine:
      type: ray                        # local (default) | ray
      address: ray://raycluster-head-svc.lakehouse:10001
      max_tasks: 8                     # units in flight per destination (default: cluster CPUs)
      unit_size_mb: 128                # data-file megabytes per unit
      max_retries: 3                   # Ray's retries of a unit (dead worker, transient failure)

``floe-sink run --engine`` and ``--ray-address`` override ``type`` and ``address``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

from floe_sink.config.validators import check_non_empty_text, optional
from floe_sink.structuring import (
    ConfigValueError,
    json_schema,
    register_checked_class,
    register_enum,
)

__all__ = ["EngineConfig", "EngineType"]


class EngineType(enum.StrEnum):
    """The engines a run can use."""

    LOCAL = "local"
    """This process delivers every destination (the default; needs no Ray)."""
    RAY = "ray"
    """Ray tasks deliver each destination's units (``pip install 'floe-sink[ray]'``)."""


register_enum(EngineType)


def _at_least(minimum: int) -> Any:
    @json_schema({"minimum": minimum})
    def check(_instance: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
        if value is not None and value < minimum:
            raise ConfigValueError(f"must be >= {minimum} (got {value!r})")

    return check


@json_schema({"exclusiveMinimum": 0})
def _positive(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ConfigValueError(f"must be > 0 (got {value!r})")


@attrs.frozen(kw_only=True)
class EngineConfig:
    """The ``engine:`` section of manifest.yaml.

    Attributes:
        type: ``local`` (default) or ``ray``.
        address: The Ray cluster (``ray://host:10001``, ``host:6379`` or ``auto``); without
            it a run starts a local Ray instance (or uses ``$RAY_ADDRESS``). Only with
            ``type: ray``.
        max_tasks: Units in flight at once per destination (default: the cluster's CPUs).
        unit_size_mb: Data-file megabytes per unit: files are grouped up to it (a file
            larger than that is a unit of its own).
        max_retries: How often Ray runs a unit again (a dead worker, a transient failure).
    """

    type: EngineType = EngineType.LOCAL
    address: str | None = attrs.field(default=None, validator=optional(check_non_empty_text))
    max_tasks: int | None = attrs.field(default=None, validator=_at_least(1))
    unit_size_mb: float = attrs.field(default=128.0, validator=_positive)
    max_retries: int = attrs.field(default=3, validator=_at_least(0))

    def __attrs_post_init__(self) -> None:
        problems = _engine_rules(attrs.asdict(self, recurse=False))
        if problems:
            raise ConfigValueError("; ".join(str(problem) for problem in problems))


@json_schema(
    {
        "if": {"not": {"required": ["type"], "properties": {"type": {"const": "ray"}}}},
        "then": {"properties": {"address": {"type": "null"}}},
    }
)
def _engine_rules(values: Mapping[str, Any]) -> list[ConfigValueError]:
    if values.get("address") and values.get("type", EngineType.LOCAL) != EngineType.RAY:
        return [
            ConfigValueError(
                "only valid with type: ray (the local engine uses no cluster); set type: ray "
                "or remove address",
                at=("address",),
            )
        ]
    return []


register_checked_class(EngineConfig, cross_check=_engine_rules, null_is_default=frozenset({"type"}))
