"""Moved to :mod:`floe_sink.structuring`: one converter and one error formatter for
configuration files, sink options and models. These names stay importable from here."""

from floe_sink.structuring import (
    ConfigValueError,
    ConfigValueErrors,
    Problem,
    collect_problems,
    describe_value,
    format_path,
    near_miss,
    register_checked_class,
    register_enum,
)
from floe_sink.structuring import converter as config_converter

__all__ = [
    "ConfigValueError",
    "ConfigValueErrors",
    "Problem",
    "collect_problems",
    "config_converter",
    "describe_value",
    "format_path",
    "near_miss",
    "register_checked_class",
    "register_enum",
]
