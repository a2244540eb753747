"""Declarative YAML mappings: load, validate into a typed model, report file and line.

A mapping says, for each unified column, where its value comes from and how to convert
it::

    fields:
      trade_id: {path: trade_id, type: string}              # a field of the raw record
      side:     {path: side, type: string, map: {buy: sell, sell: buy}}
      side:     {path: "[2]", type: string, sign: {positive: buy, negative: sell}}
      price:    {path: price, type: decimal}                 # decimal string -> double
      quantity: {path: "[2]", type: decimal, absolute: true} # |signed amount|
      trade_ts: {path: time, type: timestamp, format: iso8601}
      exchange: {const: coinbase}                            # a constant
      symbol:   {context: symbol}                            # from the raw file's header
      ingest_ts: {context: fetched_at}

``path`` is a key (``price``; ``a.b`` and ``trade[0]`` reach into nested objects and
arrays) when records are JSON objects, or an index (``[0]``) when they are JSON arrays
(``record: array``). Bulk-archive files are CSV (``record: csv``): the mapping names the
file's ``columns`` in order, and a ``path`` is one of them. YAML is read with
the safe loader only. Unknown keys, wrong types and missing columns are errors that
name the file and the line.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from schemahub.errors import InvalidIdentifier, MappingError
from schemahub.identifiers import exchange_name
from schemahub.transform.schema import MAPPED

FieldType = Literal["string", "decimal", "integer", "timestamp"]
TimeFormat = Literal["iso8601", "epoch", "epoch_s", "epoch_ms", "epoch_us", "epoch_ns"]
"""``epoch`` is an integer in the unit the raw file's header declares (``time_unit``)."""
ContextName = Literal["symbol", "exchange", "fetched_at"]

_OBJECT_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*|\[\d{1,3}\])*")
_ARRAY_PATH = re.compile(r"\[(\d{1,3})\]")
_TYPE_OF_COLUMN: dict[str, FieldType] = {
    "exchange": "string", "symbol": "string", "trade_id": "string", "id_kind": "string", "side": "string",
    "price": "decimal", "quantity": "decimal", "trade_ts": "timestamp", "ingest_ts": "timestamp",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class FieldSpec(_Model):
    path: str | None = None
    const: str | None = None
    context: ContextName | None = None
    type: FieldType = "string"
    format: TimeFormat | None = None
    map: dict[str, str] | None = None
    sign: dict[str, str] | None = None
    """A string column read from the SIGN of a signed number (Bitfinex's amount: > 0 the
    taker bought); zero or a non-number is rejected."""
    absolute: bool = False
    """A decimal column's absolute value (Bitfinex's signed amount is the quantity)."""

    @model_validator(mode="after")
    def _one_source(self) -> FieldSpec:
        sources = [s for s in ("path", "const", "context") if getattr(self, s) is not None]
        if len(sources) != 1:
            raise ValueError(f"give exactly one of path, const or context (got {sources or 'none'})")
        if (self.type == "timestamp") != (self.format is not None) and self.path is not None:
            raise ValueError("a timestamp needs a format (iso8601, epoch_s, epoch_ms, epoch_us, "
                             "epoch_ns), and only a timestamp takes one")
        if self.map is not None and self.type != "string":
            raise ValueError("map applies to string fields only")
        if self.sign is not None and (self.type != "string" or self.map is not None
                                      or set(self.sign) != {"positive", "negative"}):
            raise ValueError("sign applies to string fields without map, and names both "
                             "positive and negative")
        if self.absolute and self.type != "decimal":
            raise ValueError("absolute applies to decimal fields only")
        return self


class TradeMapping(_Model):
    mapping_version: int = Field(ge=1)
    exchange: str
    endpoint: str
    record: Literal["object", "array", "csv"] = "object"
    columns: list[str] | None = None
    """``record: csv``: the file's columns, in order (its rows have no names)."""
    description: str | None = None
    fields: dict[str, FieldSpec]

    @field_validator("columns")
    @classmethod
    def _csv_columns(cls, columns: list[str] | None, info: ValidationInfo) -> list[str] | None:
        csv = info.data.get("record") == "csv"
        if csv and not columns:
            raise ValueError("record: csv needs the file's columns, in order")
        if not csv and columns is not None:
            raise ValueError("columns apply to record: csv only")
        for column in columns or []:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", column):
                raise ValueError(f"column {column!r} is not a plain name")
        if columns is not None and len(set(columns)) != len(columns):
            raise ValueError("columns must be unique")
        return columns

    @field_validator("exchange")
    @classmethod
    def _exchange(cls, value: str) -> str:
        try:
            return exchange_name(value)
        except InvalidIdentifier as exc:
            raise ValueError(str(exc)) from None

    @field_validator("fields")
    @classmethod
    def _columns(cls, fields: dict[str, FieldSpec], info: ValidationInfo) -> dict[str, FieldSpec]:
        missing = [c for c in MAPPED if c not in fields]
        unknown = [c for c in fields if c not in MAPPED]
        if missing:
            raise ValueError(f"missing unified column(s): {', '.join(missing)}")
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown column(s): {', '.join(unknown)} (the unified "
                             f"columns are {', '.join(MAPPED)})")
        record = info.data.get("record")
        array = record == "array"
        columns = info.data.get("columns") or []
        if record == "csv" and not columns:
            raise ValueError("record: csv needs the file's columns, in order (columns: [...])")
        for name, spec in fields.items():
            if spec.path is not None and record == "csv":
                if spec.path not in columns:
                    known = ", ".join(columns)
                    raise ValueError(f"{name}: path {spec.path!r} is not one of the columns ({known})")
            elif spec.path is not None:
                pattern = _ARRAY_PATH if array else _OBJECT_PATH
                if not pattern.fullmatch(spec.path):
                    shape = "[index]" if array else "a key such as price, a.b or trade[0]"
                    raise ValueError(f"{name}: path {spec.path!r} is not {shape}")
            expected = _TYPE_OF_COLUMN[name]
            if spec.path is not None and spec.type != expected:
                raise ValueError(f"{name}: type must be {expected} (the column's type), not {spec.type}")
            if spec.context == "fetched_at" and expected != "timestamp":
                raise ValueError(f"{name}: fetched_at is a timestamp")
        return fields

    @property
    def key(self) -> str:
        return f"{self.exchange}.{self.endpoint}"

    def paths(self) -> dict[str, str]:
        """Unified column -> raw path, for the columns read from the record."""
        return {name: spec.path for name, spec in self.fields.items() if spec.path is not None}


def parse_mapping(text: str, where: str) -> TradeMapping:
    """Validate YAML text into a ``TradeMapping``; errors name ``where`` and the line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise MappingError(f"not valid YAML: {getattr(exc, 'problem', exc)}", path=where, line=line) from None
    if not isinstance(data, dict):
        raise MappingError("a mapping must be a YAML mapping (key: value)", path=where, line=1)
    try:
        return TradeMapping.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        field = ".".join(str(p) for p in loc) or "(top level)"
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = f"unknown key {loc[-1]!r}"
        elif first["type"] == "missing":
            message = f"missing required key {loc[-1]!r}"
        column = message.split(":", 1)[0]
        if loc == ("fields",) and column in data.get("fields", {}):
            loc = ("fields", column)  # point at the offending column's own line
        raise MappingError(f"{field}: {message}", path=where, line=_line_of(root, loc)) from None


def load_mapping(path: str | Path) -> TradeMapping:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(f"cannot read: {exc.strerror}", path=str(path), line=None) from None
    return parse_mapping(text, str(path))


@cache
def packaged(exchange: str, endpoint: str = "trades") -> TradeMapping:
    """The mapping shipped with SchemaHub for ``exchange`` and ``endpoint``."""
    name = f"{exchange_name(exchange)}.{endpoint}.yaml"
    resource = resources.files("schemahub.transform") / "mappings" / name
    if not resource.is_file():
        raise MappingError("no such mapping", path=f"mappings/{name}", line=None)
    return parse_mapping(resource.read_text(encoding="utf-8"), f"mappings/{name}")


def _line_of(node: Any, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at ``loc`` (or of its nearest existing parent)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if not isinstance(node, yaml.MappingNode):
            break
        child = next((v for k, v in node.value if k.value == str(part)), None)
        key = next((k for k, _ in node.value if k.value == str(part)), None)
        if child is None:
            break
        node = child
        line = (key.start_mark.line if key is not None else child.start_mark.line) + 1
    return line
