"""SchemaHub: exactly-once crypto trade data from exchange REST APIs into one unified table.

From Python: ``schemahub.open_lake("./lake")`` (see ``schemahub.api``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__"]  # open_lake, Lake and Relation resolve lazily (below): see schemahub.api

if TYPE_CHECKING:
    from schemahub.api import Lake as Lake
    from schemahub.api import Relation as Relation
    from schemahub.api import open_lake as open_lake


def __getattr__(name: str) -> Any:
    # The API pulls in DuckDB and Arrow: imported on first use, so the CLI starts without them.
    if name in ("Lake", "Relation", "open_lake"):
        from schemahub import api

        return getattr(api, name)
    raise AttributeError(f"module 'schemahub' has no attribute {name!r}")
