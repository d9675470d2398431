"""Governance: the sink types a platform manifest approves.

The enterprise manifest's ``approved_sinks`` lists the sink types data teams may deliver to
(``None``: any; ``[]``: none). :func:`check_governance` checks every destination of a floe.yaml
and returns *all* violations, so that a data team sees the whole picture in one run.
"""

from __future__ import annotations

from collections.abc import Sequence

from floe_sink.config.destinations import FloeSpec
from floe_sink.config.errors import GovernanceError, SinkWhitelistError
from floe_sink.config.manifest import PlatformManifest

__all__ = ["check_governance", "enforce_governance", "validate_sink_whitelist"]


def validate_sink_whitelist(
    sink_type: str, approved_sinks: Sequence[str] | None, *, destination: str | None = None
) -> None:
    """Check one sink type against the manifest's ``approved_sinks``.

    Args:
        sink_type: The sink type a destination uses.
        approved_sinks: The approved sink types; ``None`` approves every sink type, an empty
            list approves none. Matching is exact (case-sensitive).
        destination: The destination's name, for the error message.

    Raises:
        SinkWhitelistError: ``sink_type`` is not approved.
    """
    if approved_sinks is not None and sink_type not in approved_sinks:
        raise SinkWhitelistError(sink_type, approved_sinks, destination)


def check_governance(spec: FloeSpec, manifest: PlatformManifest) -> list[SinkWhitelistError]:
    """Every governance violation of ``spec`` under ``manifest``.

    Disabled destinations (``enabled: false``) are checked too: a declaration that would break
    the rules once enabled is reported now, not on the day someone flips the switch.

    Args:
        spec: The loaded floe.yaml.
        manifest: The loaded manifest.yaml.

    Returns:
        One :class:`SinkWhitelistError` per refused destination, in floe.yaml order; empty
        when everything is allowed.
    """
    violations: list[SinkWhitelistError] = []
    for destination in spec.destinations:
        try:
            validate_sink_whitelist(
                destination.sink_type, manifest.approved_sinks, destination=destination.name
            )
        except SinkWhitelistError as violation:
            violations.append(violation)
    return violations


def enforce_governance(spec: FloeSpec, manifest: PlatformManifest) -> None:
    """Like :func:`check_governance`, but raise when there is any violation.

    Raises:
        GovernanceError: Listing every violation (its ``violations`` attribute holds them).
    """
    violations = check_governance(spec, manifest)
    if violations:
        raise GovernanceError(violations)
