"""Run ``moto_server`` with S3's conditional writes made atomic, as they are on AWS.

moto 5.2.5 checks ``If-Match``/``If-None-Match`` and then stores the object as two steps
without a lock (``S3Response.put_object``), so two racing conditional PUTs can both
succeed - rarely (the GIL mostly hides it), but real S3 never allows it: one gets 412
PreconditionFailed. A race test must not pass or fail on moto's luck. This launcher
serializes S3 object PUTs in the server (the check and the store together) and is
otherwise ``moto_server`` unchanged: ``python tests/moto_server.py -H 127.0.0.1 -p 5000``.

It also counts the requests it serves, by method, for the benchmarks: ``GET /_requests``
answers the counts so far as JSON, ``POST /_requests`` (or ``DELETE``) starts them again.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.s3.responses import S3Response
from moto.server import main

_PUTS = threading.Lock()
_put_object = S3Response.put_object


def _atomic_put_object(self: S3Response) -> Any:
    with _PUTS:
        return _put_object(self)


S3Response.put_object = _atomic_put_object  # type: ignore[method-assign]

_COUNTS: Counter[str] = Counter()
_COUNTS_LOCK = threading.Lock()
_dispatch = DomainDispatcherApplication.__call__


def _counting(self: DomainDispatcherApplication, environ: dict[str, Any], start_response: Any) -> Any:
    if environ.get("PATH_INFO") == "/_requests":
        with _COUNTS_LOCK:
            body = json.dumps(dict(_COUNTS)).encode()
            if environ.get("REQUEST_METHOD") in ("POST", "DELETE"):
                _COUNTS.clear()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    with _COUNTS_LOCK:
        _COUNTS[f"{environ.get('REQUEST_METHOD')} {_area(environ)}"] += 1
    return _dispatch(self, environ, start_response)


def _area(environ: dict[str, Any]) -> str:
    """What a request touches: the lake folder of an object (``raw``, ``table``, ``state``),
    ``list`` for a listing, ``other`` for the rest (DynamoDB, buckets)."""
    parts = str(environ.get("PATH_INFO", "")).strip("/").split("/")
    if len(parts) >= 3:
        return parts[2]  # /bucket/lake/<area>/...
    return "list" if "list-type" in str(environ.get("QUERY_STRING", "")) else "other"


DomainDispatcherApplication.__call__ = _counting  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
