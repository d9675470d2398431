"""Read floe.yaml and manifest.yaml: safe YAML, strict models, every problem in one error.

Whatever is wrong with a file -- it cannot be read, it is not YAML, a key appears twice, a value
has the wrong type or breaks a rule -- the loaders raise one :class:`ConfigError` whose
``problems`` list each problem with the file, the path of the value and its line::

    floe.yaml: destinations[1].batch_size: must be >= 1 (got 0) (line 12)

YAML is loaded with a :class:`yaml.SafeLoader` subclass: no Python objects are built from tags,
and duplicate keys (which plain YAML loaders resolve silently, keeping the last) are problems.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml

from floe_sink.config.destinations import FloeSpec
from floe_sink.config.errors import ConfigError
from floe_sink.config.manifest import PlatformManifest
from floe_sink.structuring import (
    Problem,
    collect_problems,
    converter,
    describe_value,
    format_path,
)

__all__ = ["load_floe_spec", "load_manifest", "parse_floe_spec", "parse_manifest"]

T = TypeVar("T")
_Path = tuple[str | int, ...]

_MERGE_TAG = "tag:yaml.org,2002:merge"


class _CheckingLoader(yaml.SafeLoader):
    """A SafeLoader that reports duplicate keys and remembers the line of every value."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.problems: list[Problem] = []
        self.lines: dict[_Path, int] = {}
        self._done: set[int] = set()

    def load_checked(self) -> tuple[bool, Any]:
        """Parse the single document: ``(False, None)`` for an empty one, else ``(True, data)``.

        Raises:
            yaml.YAMLError: A syntax error, several documents, an unsupported tag.
        """
        node = self.get_single_node()
        if node is None:
            return False, None
        self._check(node, (), set())
        return True, self.construct_document(node)

    def _check(
        self, node: yaml.Node, path: _Path, ancestors: set[int], line: int | None = None
    ) -> None:
        # A mapping value is located by its key: an alias node carries its anchor's position.
        self.lines.setdefault(path, line or node.start_mark.line + 1)
        if id(node) in ancestors:
            self.problems.append(
                Problem(path, "an alias refers to a value that contains it (recursive YAML)")
            )
            return
        if id(node) in self._done:  # an alias of a value already checked: once is enough
            return
        ancestors.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                    continue  # merges override by design; odd keys fail in construction
                key = self.construct_object(key_node)
                line = key_node.start_mark.line + 1
                if key in first:
                    self.problems.append(
                        Problem(
                            (*path, key),
                            f"duplicate key (first defined at line {first[key]}); YAML would "
                            "silently keep only the last value, so remove one",
                            line,
                        )
                    )
                else:
                    first[key] = line
                    self._check(value_node, (*path, key), ancestors, line)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._check(item, (*path, index), ancestors)
        ancestors.discard(id(node))
        self._done.add(id(node))


def _render(source: str, problems: list[Problem], lines: dict[_Path, int]) -> Iterator[str]:
    def line_of(path: _Path) -> int | None:
        for end in range(len(path), -1, -1):
            if path[:end] in lines:
                return lines[path[:end]]
        return None

    numbered = [(problem.line or line_of(problem.path), problem) for problem in problems]
    # Problems in file order (a stable sort keeps the order of problems on one line).
    numbered.sort(key=lambda item: item[0] if item[0] is not None else 1 << 30)
    for line, problem in numbered:
        where = format_path(problem.path)
        head = f"{source}: {where}: " if where else f"{source}: "
        tail = f" (line {line})" if line is not None else ""
        yield f"{head}{problem.reason}{tail}"


def _yaml_problem(source: str, exc: yaml.YAMLError) -> str:
    # Built from the parts, not str(exc): that one quotes the offending line, which may hold
    # a credential.
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        reason = " ".join(part for part in (exc.context, exc.problem) if part) or "invalid YAML"
        if mark is not None:
            return (
                f"{source}: line {mark.line + 1}, column {mark.column + 1}: "
                f"YAML syntax error: {reason}"
            )
        return f"{source}: YAML syntax error: {reason}"
    if isinstance(exc, yaml.reader.ReaderError):
        return (
            f"{source}: character {exc.position + 1}: control characters are not allowed "
            "in YAML; remove it or quote it as an escape sequence"
        )
    return f"{source}: YAML error: {type(exc).__name__}"


def _parse(text: str | bytes, source: str, cls: type[T], expected: str) -> T:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ConfigError(
                source, [f"{source}: not UTF-8 text (invalid byte at offset {exc.start})"]
            ) from None
    try:
        loader = _CheckingLoader(text)  # the reader refuses control characters right here
    except yaml.YAMLError as exc:
        raise ConfigError(source, [_yaml_problem(source, exc)]) from None
    try:
        found, data = loader.load_checked()
    except yaml.YAMLError as exc:
        raise ConfigError(source, [_yaml_problem(source, exc)]) from None
    except RecursionError:
        raise ConfigError(source, [f"{source}: nested too deeply"]) from None
    finally:
        loader.dispose()
    if not found:
        raise ConfigError(source, [f"{source}: the file is empty; expected {expected}"])
    if not isinstance(data, dict):
        raise ConfigError(
            source,
            [
                f"{source}: the top level must be a mapping (key: value pairs), got "
                f"{describe_value(data)}; expected {expected} (line 1)"
            ],
        )
    problems = list(loader.problems)
    result: T | None = None
    try:
        result = converter.structure(data, cls)
    except RecursionError:
        problems.append(Problem((), "nested too deeply"))
    except Exception as exc:  # every failure becomes problems with paths; nothing raw escapes
        problems.extend(collect_problems(exc))
    if problems or result is None:
        raise ConfigError(source, _render(source, problems, loader.lines))
    return result


def parse_floe_spec(text: str | bytes, *, source: str = "floe.yaml") -> FloeSpec:
    """Parse and validate the text of a floe.yaml.

    Args:
        text: The YAML text (bytes are decoded as UTF-8).
        source: The name of the file in error messages.

    Returns:
        The part of floe.yaml that floe-sink owns.

    Raises:
        ConfigError: Listing every problem, each with its location.
    """
    return _parse(text, source, FloeSpec, "a mapping with an optional destinations: list")


def parse_manifest(text: str | bytes, *, source: str = "manifest.yaml") -> PlatformManifest:
    """Parse and validate the text of a manifest.yaml.

    Args:
        text: The YAML text (bytes are decoded as UTF-8).
        source: The name of the file in error messages.

    Returns:
        The part of manifest.yaml that floe-sink owns.

    Raises:
        ConfigError: Listing every problem, each with its location.
    """
    return _parse(
        text, source, PlatformManifest, "a mapping with scope, approved_sinks and/or catalog"
    )


def _read(path: str | os.PathLike[str]) -> bytes:
    source = os.fspath(path)
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        problem = "file not found"
    except IsADirectoryError:
        problem = "is a directory, not a YAML file"
    except OSError as exc:
        problem = f"cannot read the file ({exc.strerror or type(exc).__name__})"
    raise ConfigError(source, [f"{source}: {problem}"])


def load_floe_spec(path: str | os.PathLike[str]) -> FloeSpec:
    """Load and validate a floe.yaml.

    Args:
        path: The file; messages name it as given.

    Returns:
        The part of floe.yaml that floe-sink owns (its destinations).

    Raises:
        ConfigError: The file cannot be read, is not valid YAML, or breaks the rules; the
            error lists every problem, each with its location.
    """
    return parse_floe_spec(_read(path), source=os.fspath(path))


def load_manifest(path: str | os.PathLike[str]) -> PlatformManifest:
    """Load and validate a manifest.yaml.

    Args:
        path: The file; messages name it as given.

    Returns:
        The part of manifest.yaml that floe-sink owns (scope, approved_sinks, catalog).

    Raises:
        ConfigError: The file cannot be read, is not valid YAML, or breaks the rules; the
            error lists every problem, each with its location.
    """
    return parse_manifest(_read(path), source=os.fspath(path))
