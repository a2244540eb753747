"""Lake state files that cannot be read, each with the way back.

Ingest and transform fail only the product whose state is unreadable; ``check`` lists them
all so an operator sees every one, and ``checkpoints list`` marks such products corrupt.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from pydantic import BaseModel, ValidationError

from schemahub.errors import SchemahubError
from schemahub.infra.checkpoints import Checkpoint, GapLog, RepairLog
from schemahub.infra.storage import Storage
from schemahub.ingest.bans import Ban
from schemahub.transform.state import Quarantined


@dataclass(frozen=True)
class Broken:
    path: str
    kind: str
    error: str
    recovery: str


_KINDS: tuple[tuple[str, str, type[BaseModel], str], ...] = (
    ("state/checkpoints/", "checkpoint", Checkpoint,
     "run `schemahub checkpoints rebuild --exchange EXCHANGE --products SYMBOL` "
     "(derives it from the raw files)"),
    ("state/gaps/", "gap log", GapLog,
     "move it aside; the ids it listed then count as unexplained until re-checked"),
    ("state/quarantine/", "quarantine record", Quarantined,
     "delete it; the next `schemahub transform --retry-quarantined` tries the file again"),
    ("state/repairs/", "repair log", RepairLog,
     "move it aside and release the quarantined files again (`schemahub quarantine release`)"),
    ("state/bans/", "ban record", Ban, "delete it: ingest then asks the exchange again"),
)


def unreadable(storage: Storage) -> list[Broken]:
    broken = []
    for prefix, kind, model, recovery in _KINDS:
        for info in storage.list(prefix):
            try:
                model.model_validate(orjson.loads(storage.read(info.key) or b""))
            except (orjson.JSONDecodeError, ValidationError) as exc:
                reason = str(exc).splitlines()[0]
                broken.append(Broken(storage.url_for(info.key), kind, reason, recovery))
            except SchemahubError as exc:
                broken.append(Broken(storage.url_for(info.key), kind, str(exc), recovery))
    return broken
