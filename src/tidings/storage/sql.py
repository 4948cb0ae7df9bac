"""Named SQL queries kept in ``.sql`` files.

A file holds blocks introduced by ``-- name: <query_name>``; the text up to the next
such line is the query. Keeping SQL out of Python strings makes it reviewable as SQL.
"""

from __future__ import annotations

import re
from importlib import resources

_NAME_LINE = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def load_queries(package: str, filename: str) -> dict[str, str]:
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    parts = _NAME_LINE.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def load_migrations(package: str, folder: str = "migrations") -> list[tuple[int, str]]:
    """``NNNN_description.sql`` files of a package folder, as (version, script), in order."""
    root = resources.files(package).joinpath(folder)
    found = []
    for entry in root.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.read_text(encoding="utf-8")))
    return sorted(found)
