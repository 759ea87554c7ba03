"""The project's SQL: named queries and versioned migrations, read from ``include/sql``.

Python code never builds SQL from values; it loads a statement by name and passes values as parameters.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

_MIGRATION_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


def sql_dir() -> Path:
    """The ``include/sql`` folder: ``$KOMOJU_SQL_DIR`` if set, else the one beside ``plugins/``."""
    configured = os.environ.get("KOMOJU_SQL_DIR")
    folder = Path(configured) if configured else Path(__file__).resolve().parents[2] / "include" / "sql"
    if not (folder / "queries").is_dir():
        raise FileNotFoundError(
            f"The komoju SQL folder was not found at {folder}. Deploy include/sql beside plugins/, "
            "or set KOMOJU_SQL_DIR to its path."
        )
    return folder


@functools.cache
def query(name: str) -> str:
    """The text of the named query ``include/sql/queries/<name>.sql``."""
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise ValueError(f"Invalid query name {name!r}: use lowercase letters, digits and underscores.")
    return (sql_dir() / "queries" / f"{name}.sql").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Migration:
    """One versioned schema change, ``include/sql/migrations/NNNN_name.sql``."""

    version: int
    name: str
    path: Path

    @property
    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


def migrations() -> list[Migration]:
    """Every migration file, in version order; a misnamed file or a duplicate version is an error."""
    found: dict[int, Migration] = {}
    for path in sorted((sql_dir() / "migrations").iterdir()):
        if path.suffix != ".sql":
            continue
        match = _MIGRATION_FILE.match(path.name)
        if not match:
            raise ValueError(f"Migration file {path.name} must be named NNNN_lowercase_name.sql.")
        version = int(match["version"])
        if version in found:
            raise ValueError(f"Migrations {found[version].path.name} and {path.name} share version {version}.")
        found[version] = Migration(version, match["name"], path)
    return [found[v] for v in sorted(found)]
