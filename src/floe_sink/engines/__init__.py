"""Engines: where a run's deliveries are carried out.

- ``local`` (the default): this process streams each destination's scan through its sink
  (:func:`floe_sink.job.deliver`). Needs no Ray, and never imports it.
- ``ray``: the scan is cut into units (:mod:`floe_sink.units`) that Ray tasks deliver, on a
  local Ray instance started for the run or on the cluster at ``address``
  (:mod:`floe_sink.engines.ray_engine`; ``pip install 'floe-sink[ray]'``). See
  ``docs/scale-out.md``.

The command picks one from ``--engine``/``--ray-address`` or the manifest's ``engine:``
section (:func:`engine_settings`), opens it for the run (:func:`open_engine`) and hands it to
:func:`floe_sink.job.deliver`. Ray is imported only there, when the engine is ``ray``.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from floe_sink.errors import SinkConfigurationError

if TYPE_CHECKING:
    from floe_sink.job import PreparedDestination
    from floe_sink.models import EgressResult

__all__ = [
    "ENGINE_TYPES",
    "RAY_EXTRA_HINT",
    "Engine",
    "EngineSettings",
    "EngineUnavailableError",
    "engine_settings",
    "open_engine",
]

ENGINE_TYPES = ("local", "ray")

RAY_EXTRA_HINT = "install it with: pip install 'floe-sink[ray]'"


class EngineUnavailableError(SinkConfigurationError):
    """Raised when the engine asked for cannot be used here (Ray is not installed)."""


@attrs.frozen(kw_only=True)
class EngineSettings:
    """How a run delivers: the engine and its knobs (manifest ``engine:``, CLI options).

    Attributes:
        type: ``local`` or ``ray``.
        address: The Ray cluster to connect to (``ray://host:10001``, ``host:6379``,
            ``auto``); ``None`` starts a local Ray instance for the run (or uses
            ``$RAY_ADDRESS``, as Ray does).
        max_tasks: Units in flight at once per destination; ``None``: the cluster's CPUs.
        unit_size_mb: Data-file megabytes per unit (files are grouped up to it; fractions
            allowed, a file larger than it is a unit of its own).
        max_retries: How often Ray runs a unit again after its worker died or it failed
            transiently (after the sink's own retries).
    """

    type: str = "local"
    address: str | None = None
    max_tasks: int | None = None
    unit_size_mb: float = 128
    max_retries: int = 3

    @property
    def unit_bytes(self) -> int:
        """:attr:`unit_size_mb` in bytes (at least 1)."""
        return max(1, int(self.unit_size_mb * 1024 * 1024))

    @property
    def plan(self) -> str:
        """The engine's part of a delivery's fingerprint (:func:`floe_sink.job.delivery_plan`).

        A delivery cut into units is resumed only by an engine that cuts it the same way;
        ``local`` adds nothing to the fingerprint.
        """
        if self.type == "local":
            return "local"
        return f"{self.type}:unit_bytes={self.unit_bytes}"


class Engine(Protocol):
    """What :func:`floe_sink.job.deliver` needs from an engine other than ``local``."""

    def write(self, prepared: PreparedDestination, manager: Any, reporter: Any) -> EgressResult:
        """Deliver one prepared destination; record its progress in its delivery's journal.

        Raises:
            DeliveryInterrupted: A stop was requested; the delivery stays resumable.
            SinkConfigurationError: The destination cannot be delivered by this engine.
        """


def engine_settings(
    manifest: Any, *, engine: str | None = None, address: str | None = None
) -> EngineSettings:
    """The run's engine: the command's options over the manifest's ``engine:`` section.

    Args:
        manifest: The :class:`floe_sink.config.PlatformManifest` (its ``engine`` may be None).
        engine: ``--engine``; ``None`` takes the manifest's (default ``local``).
        address: ``--ray-address``; implies ``ray`` when no engine is named.

    Raises:
        EngineUnavailableError: ``ray`` was asked for and Ray is not installed.
        SinkConfigurationError: ``--ray-address`` with the local engine, or an unknown engine.
    """
    section = getattr(manifest, "engine", None)
    base = EngineSettings()
    if section is not None:
        base = EngineSettings(
            type=str(getattr(section.type, "value", section.type)),
            address=section.address,
            max_tasks=section.max_tasks,
            unit_size_mb=section.unit_size_mb,
            max_retries=section.max_retries,
        )
    chosen = engine or ("ray" if address else base.type)
    if chosen not in ENGINE_TYPES:
        raise SinkConfigurationError(
            f"unknown engine {chosen!r}; expected one of {', '.join(ENGINE_TYPES)}"
        )
    if chosen == "local" and address:
        raise SinkConfigurationError(
            "--ray-address needs the Ray engine: add --engine ray (or drop --ray-address)"
        )
    settings = attrs.evolve(base, type=chosen, address=address or base.address)
    if settings.type == "ray" and not ray_installed():
        raise EngineUnavailableError(
            "the Ray engine (--engine ray, or engine: type: ray in the manifest) needs Ray, "
            f"which is not installed; {RAY_EXTRA_HINT}, or run with --engine local"
        )
    return settings


def ray_installed() -> bool:
    """True when ``import ray`` would find Ray (without importing it)."""
    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):
        return False


@contextlib.contextmanager
def open_engine(
    settings: EngineSettings,
    *,
    catalog: Any,
    secrets_dir: Path | None,
    state_dir: Path,
    show_worker_logs: bool = True,
) -> Iterator[Engine | None]:
    """The engine for a run: ``None`` for ``local``, else a started one, closed on exit.

    Args:
        settings: From :func:`engine_settings`.
        catalog: The manifest's catalog section (``None``: the embedded one); Ray workers
            open the source tables with it, resolving its secret where they run.
        secrets_dir: The command's ``--secrets-dir`` (workers read destinations' secrets
            from the same path when it exists there, else from their own
            ``$FLOE_SECRETS_DIR``).
        state_dir: The state directory (the embedded catalog lives below it).
        show_worker_logs: Let Ray print the tasks' log lines on this process's terminal.
    """
    if settings.type == "local":
        yield None
        return
    from floe_sink.engines.ray_engine import RayEngine

    engine = RayEngine(
        settings,
        catalog=catalog,
        secrets_dir=secrets_dir,
        state_dir=state_dir,
        show_worker_logs=show_worker_logs,
    )
    engine.start()
    try:
        yield engine
    finally:
        engine.close()
