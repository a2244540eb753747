"""Run ``moto_server`` with S3's conditional writes made atomic, as they are on AWS.

moto 5.2.5 checks ``If-Match``/``If-None-Match`` and then stores the object as two steps
without a lock (``S3Response.put_object``), so two racing conditional PUTs can both
succeed - rarely (the GIL mostly hides it), but real S3 never allows it: one gets 412
PreconditionFailed. A race test must not pass or fail on moto's luck. This launcher
serializes S3 object PUTs in the server (the check and the store together) and is
otherwise ``moto_server`` unchanged: ``python tests/moto_server.py -H 127.0.0.1 -p 5000``.
"""

from __future__ import annotations

import threading
from typing import Any

from moto.s3.responses import S3Response
from moto.server import main

_PUTS = threading.Lock()
_put_object = S3Response.put_object


def _atomic_put_object(self: S3Response) -> Any:
    with _PUTS:
        return _put_object(self)


S3Response.put_object = _atomic_put_object  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
