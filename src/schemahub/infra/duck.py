"""DuckDB connections: extensions from their pinned wheels, and access to the lake's storage.

Extensions (delta, httpfs) are installed from the ``duckdb-extension-<name>`` wheels into
a private extension directory: no network, nothing written to the home directory, and
DuckDB never auto-installs anything.
"""

from __future__ import annotations

import glob
import importlib
import os
import tempfile

import duckdb

from schemahub.errors import ConfigError
from schemahub.infra.storage import Storage


def _extension(name: str) -> str:
    module = importlib.import_module(f"duckdb_extension_{name}")
    found = glob.glob(os.path.join(os.path.dirname(str(module.__file__)), "extensions", "*",
                                   f"{name}.duckdb_extension"))
    if not found:
        raise ConfigError(f"the DuckDB {name} extension is not installed (pip package "
                          f"duckdb-extension-{name})")
    return found[0]


def load_extension(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Install an extension from its pinned wheel (no network) and load it."""
    con.execute(f"INSTALL '{_extension(name)}'")
    con.execute(f"LOAD {name}")


def connect(threads: int | None = None, storage: Storage | None = None,
            extensions: tuple[str, ...] = ("delta",)) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with our extensions, able to read the lake's storage."""
    config: dict[str, str | bool | int | float | list[str]] = {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "extension_directory": os.path.join(tempfile.gettempdir(), f"schemahub-duckdb-{os.getuid()}"),
    }
    if threads:
        config["threads"] = threads
    con = duckdb.connect(config=config)
    try:
        for name in extensions:
            load_extension(con, name)
        if storage is not None:
            storage.configure_duckdb(con)
    except BaseException:
        con.close()
        raise
    return con
