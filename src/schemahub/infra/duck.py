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
from schemahub.infra.storage import ObjectStoreAccess


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


def connect(threads: int | None = None, access: ObjectStoreAccess | None = None,
            extensions: tuple[str, ...] = ("delta",)) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with our extensions, able to read the lake's storage (``access``:
    an object store's endpoint and credentials; None for a local lake)."""
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
        if access is not None:
            load_extension(con, "httpfs")
            add_s3_secret(con, access)
    except BaseException:
        con.close()
        raise
    return con


def add_s3_secret(con: duckdb.DuckDBPyConnection, access: ObjectStoreAccess) -> None:
    """Give a DuckDB connection (httpfs loaded) an S3 secret. The SQL is never logged."""
    parts = ["TYPE s3", f"KEY_ID {_sql(access.key_id)}", f"SECRET {_sql(access.secret)}",
             f"REGION {_sql(access.region)}"]
    if access.token:
        parts.append(f"SESSION_TOKEN {_sql(access.token)}")
    if access.endpoint_url:
        scheme, _, host = access.endpoint_url.partition("://")
        parts += [f"ENDPOINT {_sql(host)}", "URL_STYLE 'path'",
                  f"USE_SSL {'true' if scheme == 'https' else 'false'}"]
    con.execute(f"CREATE OR REPLACE SECRET schemahub_s3 ({', '.join(parts)})")


def _sql(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
