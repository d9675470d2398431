"""Fixtures of the configuration tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture
def write_file(tmp_path: Any) -> Callable[[str, str | bytes], Any]:
    """Write a file under tmp_path and return its path."""

    def write(name: str, content: str | bytes) -> Any:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    return write
