"""The errors of configuration loading and governance.

:class:`ConfigError` is the one error type of the loaders: whatever is wrong with a file (YAML
syntax, duplicate keys, wrong types, failed rules), it lists every problem found, each prefixed
with the file and the location of the offending value. :class:`SinkWhitelistError` is a
governance violation: a destination uses a sink type the platform manifest does not approve.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from floe_sink.errors import FloeSinkError, ProblemsError, SinkConfigurationError

__all__ = ["ConfigError", "GovernanceError", "SecretResolutionError", "SinkWhitelistError"]


class ConfigError(ProblemsError):
    """Raised when floe.yaml or manifest.yaml cannot be read, parsed or validated.

    One error lists every problem found in the file, so that a user fixes them all in one go.
    The message never contains secret values.

    Attributes:
        path: The file (as the caller named it), or a label such as ``floe.yaml`` when the
            text did not come from a file.
        problems: One line per problem, e.g.
            ``floe.yaml: destinations[1].batch_size: must be >= 1 (got 0) (line 9)``.
    """

    def __init__(self, path: str, problems: Iterable[str]) -> None:
        self.path = path
        listed = list(problems) or [f"{path}: invalid configuration"]
        super().__init__(listed, header=f"Invalid configuration in {path}")


class SinkWhitelistError(FloeSinkError):
    """Raised when a destination uses a sink type that the platform manifest does not approve.

    Attributes:
        sink_type: The sink type that was refused.
        approved_sinks: The sink types the manifest approves (possibly empty).
        destination: The destination (its ``name`` in floe.yaml) that asked for the sink
            type, if known.
    """

    def __init__(
        self, sink_type: str, approved_sinks: Sequence[str], destination: str | None = None
    ) -> None:
        self.sink_type = sink_type
        self.approved_sinks: list[str] = list(approved_sinks)
        self.destination = destination
        who = f"Destination {destination!r} uses sink type" if destination else "Sink type"
        approved = (
            f"the approved sink types are {', '.join(repr(s) for s in self.approved_sinks)}"
            if self.approved_sinks
            else "the manifest approves no sink types (approved_sinks: [])"
        )
        super().__init__(
            f"{who} {sink_type!r}, which is not in the platform manifest's approved_sinks; "
            f"{approved}. Use an approved sink type, or ask the platform team to add "
            f"{sink_type!r} to approved_sinks in manifest.yaml."
        )


class GovernanceError(ProblemsError):
    """Raised by :func:`~floe_sink.config.enforce_governance` listing every violation.

    Attributes:
        violations: One :class:`SinkWhitelistError` per refused destination (``problems``
            holds their messages).
    """

    def __init__(self, violations: Iterable[SinkWhitelistError]) -> None:
        self.violations: list[SinkWhitelistError] = list(violations)
        super().__init__(
            [str(violation) for violation in self.violations],
            header="floe.yaml violates the platform manifest",
        )


class SecretResolutionError(SinkConfigurationError):
    """Raised when a ``connection_secret_ref`` (or one of its keys) cannot be read.

    The message names the secret, the key and the secrets directory, never a value.

    Attributes:
        ref: The secret name (``connection_secret_ref``).
        secrets_dir: The directory searched.
        key: The missing key, when one key was asked for.
    """

    def __init__(self, message: str, *, ref: str, secrets_dir: str, key: str | None = None) -> None:
        self.ref = ref
        self.secrets_dir = secrets_dir
        self.key = key
        super().__init__(message)
