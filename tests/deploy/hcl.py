"""Just enough Terraform to check our own configuration and to render parts of it, offline.

python-hcl2 parses every ``.tf`` file into a syntax tree; this module walks it to

* list the blocks (variables, locals, resources, data sources, outputs) with file and line;
* find every reference (``var.x``, ``local.y``, ``aws_s3_bucket.lake.arn``,
  ``data.aws_partition.current``) so a test can prove each one is declared;
* evaluate an expression - literals, templates, references, operators, conditionals,
  ``for`` expressions and the handful of functions our files use - with variable values
  and the apply-time attributes a test chooses. Anything outside that subset raises
  :class:`Unsupported`, so an evaluation never silently differs from Terraform's.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
from lark import Token, Tree

Node = Tree[Token]

# Names that start a reference but are not resources.
_SPECIAL_ROOTS = {"var", "local", "each", "count", "data", "path", "module", "self", "terraform"}
_ESCAPES = re.compile(r"\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[nrt\"\\])")
_SIMPLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


class Unsupported(Exception):
    """An expression uses HCL this evaluator does not implement."""


class EvaluationError(Exception):
    """Terraform would fail here too (``regex`` without a match, a bad index): what ``can`` catches."""


def _regex(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    if found is None:
        raise EvaluationError(f"regex {pattern!r} does not match {text!r}")
    return found.group(0)


@dataclass
class Block:
    kind: str  # variable, locals, resource, data, output, provider, terraform, or a nested block name
    labels: tuple[str, ...]
    attributes: dict[str, Node]
    blocks: list[Block]
    file: str
    line: int

    def attribute_names(self) -> set[str]:
        return set(self.attributes)

    def nested(self, kind: str) -> list[Block]:
        return [b for b in self.blocks if b.kind == kind]


@dataclass
class Reference:
    """``var.x``, ``local.x``, ``TYPE.NAME`` (a resource), ``data.TYPE.NAME``, ``each.key``..."""

    root: str
    parts: list[str | int]
    file: str
    line: int

    @property
    def address(self) -> str:
        """What the reference names: ``var.x``, ``data.TYPE.NAME``, ``TYPE.NAME`` (no attribute)."""
        named = 2 if self.root == "data" else 1
        return ".".join([self.root, *(str(p) for p in self.parts[:named])])


def _children(node: Node) -> list[Node | Token]:
    return [c for c in node.children
            if not (isinstance(c, Tree) and c.data == "new_line_or_comment")]


def _trees(node: Node) -> list[Node]:
    return [c for c in _children(node) if isinstance(c, Tree)]


def _name(node: Node) -> str:
    assert node.data in ("identifier", "keyword"), node.data  # `in`, `for`, `if` may name attributes
    (token,) = node.children
    return str(token) if isinstance(token, Token) else _name(token)


def _label(node: Node | Token) -> str:
    if isinstance(node, Tree) and node.data == "identifier":
        return _name(node)
    if isinstance(node, Tree) and node.data in ("string", "expr_term"):
        value = Evaluator.static(node)
        assert isinstance(value, str)
        return value
    return str(node)


def _line(node: Node) -> int:
    for token in node.scan_values(lambda v: isinstance(v, Token)):
        if token.line is not None:
            return int(token.line)
    return 0


def _parse_body(body: Node, file: str) -> tuple[dict[str, Node], list[Block]]:
    attributes: dict[str, Node] = {}
    blocks: list[Block] = []
    for item in _trees(body):
        if item.data == "attribute":
            key, *_, value = _children(item)
            assert isinstance(key, Tree) and isinstance(value, Tree)
            attributes[_name(key)] = value
        elif item.data == "block":
            parts = _children(item)
            first = parts[0]
            assert isinstance(first, Tree)
            kind = _name(first)
            labels = tuple(_label(p) for p in parts[1:] if not isinstance(p, Token) and p.data != "body")
            inner = next((p for p in parts if isinstance(p, Tree) and p.data == "body"), None)
            attrs, nested = _parse_body(inner, file) if inner is not None else ({}, [])
            blocks.append(Block(kind, labels, attrs, nested, file, _line(item)))
    return attributes, blocks


def load_tfvars(path: Path) -> dict[str, Any]:
    """A ``.tfvars`` file: literal values only."""
    tree = hcl2.parses_to_tree(path.read_text())
    body = next(c for c in tree.children if isinstance(c, Tree) and c.data == "body")
    attributes, _ = _parse_body(body, path.name)
    return {name: Evaluator.static(expr) for name, expr in attributes.items()}


@dataclass
class Config:
    """All ``.tf`` files of one directory."""

    directory: Path
    blocks: list[Block] = field(default_factory=list)

    @classmethod
    def load(cls, directory: Path) -> Config:
        config = cls(directory)
        for path in sorted(directory.glob("*.tf")):
            tree = hcl2.parses_to_tree(path.read_text())
            body = next(c for c in tree.children if isinstance(c, Tree) and c.data == "body")
            _, blocks = _parse_body(body, path.name)
            config.blocks.extend(blocks)
        return config

    def of_kind(self, kind: str) -> list[Block]:
        return [b for b in self.blocks if b.kind == kind]

    @property
    def variables(self) -> dict[str, Block]:
        return {b.labels[0]: b for b in self.of_kind("variable")}

    @property
    def locals(self) -> dict[str, tuple[Node, Block]]:
        return {name: (expr, b) for b in self.of_kind("locals") for name, expr in b.attributes.items()}

    @property
    def resources(self) -> dict[str, Block]:
        return {f"{b.labels[0]}.{b.labels[1]}": b for b in self.of_kind("resource")}

    @property
    def data_sources(self) -> dict[str, Block]:
        return {f"data.{b.labels[0]}.{b.labels[1]}": b for b in self.of_kind("data")}

    def resource(self, address: str) -> Block:
        return self.resources[address]

    # -- references -----------------------------------------------------------------

    def references(self) -> Iterator[tuple[Reference, frozenset[str]]]:
        """Every reference in every expression, with the names bound where it occurs
        (``for`` iterators, ``dynamic`` block iterators)."""
        for block in self.blocks:
            yield from _block_references(block, frozenset())


def _block_references(block: Block, bound: frozenset[str]) -> Iterator[tuple[Reference, frozenset[str]]]:
    if block.kind == "dynamic":
        bound = bound | {block.labels[0]}
    for name, expr in block.attributes.items():
        if block.kind == "variable" and name == "type":
            continue  # a type constraint (list(string)), not an expression
        yield from _expr_references(expr, bound, block.file)
    for nested in block.blocks:
        yield from _block_references(nested, bound)


def _expr_references(node: Node, bound: frozenset[str],
                     file: str) -> Iterator[tuple[Reference, frozenset[str]]]:
    if node.data in ("for_tuple_expr", "for_object_expr"):
        intro = next(c for c in _trees(node) if c.data == "for_intro")
        names = frozenset(_name(c) for c in _trees(intro) if c.data == "identifier")
        for child in _trees(intro):
            if child.data != "identifier":
                yield from _expr_references(child, bound, file)
        for child in _trees(node):
            if child.data != "for_intro":
                yield from _expr_references(child, bound | names, file)
        return
    if node.data == "function_call":
        for child in _trees(node)[1:]:
            yield from _expr_references(child, bound, file)
        return
    if node.data == "object_elem_key":  # a key is a name, not a reference
        return
    chain = _reference_chain(node)
    if chain is not None:
        root, parts, rest = chain
        yield Reference(root, parts, file, _line(node)), bound
        for index in rest:
            yield from _expr_references(index, bound, file)
        return
    for child in _trees(node):
        yield from _expr_references(child, bound, file)


def _reference_chain(node: Node) -> tuple[str, list[str | int], list[Node]] | None:
    """``a.b["c"].d`` as (root, static parts, dynamic index expressions), or None."""
    if node.data == "expr_term":
        inner = _trees(node)
        if len(inner) == 1 and inner[0].data == "identifier":
            name = _name(inner[0])
            return None if name in ("true", "false", "null") else (name, [], [])
        if len(inner) == 1:
            return _reference_chain(inner[0])
        return None
    if node.data == "get_attr_expr_term":
        base, attr = _trees(node)
        chain = _reference_chain(base)
        if chain is None:
            return None
        return chain[0], [*chain[1], _name(_trees(attr)[0])], chain[2]
    if node.data == "index_expr_term":
        base, index = _trees(node)
        chain = _reference_chain(base)
        if chain is None:
            return None
        (key,) = _trees(index)
        try:
            value = Evaluator.static(key)
        except Unsupported:
            return chain[0], [*chain[1], "*"], [*chain[2], key]
        return chain[0], [*chain[1], value], chain[2]
    return None


# -- evaluation -----------------------------------------------------------------------


def _unescape(text: str) -> str:
    def one(m: re.Match[str]) -> str:
        code = m.group(1)
        return chr(int(code[1:], 16)) if code[0] in "uU" else _SIMPLE_ESCAPES[code]
    return _ESCAPES.sub(one, text)


def _tostring(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str | int | float):
        return str(value)
    raise Unsupported(f"cannot turn {value!r} into a string")


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "concat": lambda *lists: [x for one in lists for x in one],
    "join": lambda sep, items: sep.join(_tostring(i) for i in items),
    "length": len,
    "tostring": _tostring,
    "jsonencode": lambda v: json.dumps(v, separators=(",", ":")),
    "merge": lambda *maps: {k: v for m in maps for k, v in m.items()},
    "toset": lambda items: sorted(set(items)),
    "keys": lambda m: sorted(m),
    "values": lambda m: [m[k] for k in sorted(m)],
    "contains": lambda items, v: v in items,
    "lower": str.lower,
    "upper": str.upper,
    "regex": _regex,
    "alltrue": all,
    "strcontains": lambda text, part: part in text,
    "floor": math.floor,
}

_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, "+": lambda a, b: a + b,
    "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b,
    "<": lambda a, b: a < b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b, "&&": lambda a, b: a and b, "||": lambda a, b: a or b,
}


@dataclass
class Evaluator:
    """Evaluates expressions of one configuration.

    ``variables`` override the declared defaults; ``known`` gives apply-time attributes by
    address (``aws_ecr_repository.schemahub.repository_url``). A resource attribute that is
    not in ``known`` is taken from the resource's own argument of that name, so
    ``aws_s3_bucket.lake.bucket`` follows ``var.lake_bucket``.
    """

    config: Config | None
    variables: dict[str, Any] = field(default_factory=dict)
    known: dict[str, Any] = field(default_factory=dict)
    scope: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def static(node: Node) -> Any:
        """A value that needs no variables (a literal)."""
        return Evaluator(None).eval(node)

    def attribute(self, block: Block, name: str) -> Any:
        return self.eval(block.attributes[name])

    def local(self, name: str) -> Any:
        assert self.config is not None
        expr, _ = self.config.locals[name]
        return Evaluator(self.config, self.variables, self.known).eval(expr)

    def variable(self, name: str) -> Any:
        if name in self.variables:
            return self.variables[name]
        assert self.config is not None
        declared = self.config.variables[name]
        if "default" not in declared.attributes:
            raise Unsupported(f"var.{name} has no default and no value was given")
        return self.eval(declared.attributes["default"])

    def resource_attribute(self, address: str, key: Any, attr: str) -> Any:
        full = f"{address}[{key!r}].{attr}" if key is not None else f"{address}.{attr}"
        for candidate in (full, f"{address}.{attr}"):
            if candidate in self.known:
                value = self.known[candidate]
                return value(key) if callable(value) else value
        assert self.config is not None
        block = self.config.resources.get(address)
        if block is None or attr not in block.attributes:
            raise Unsupported(f"{full} is only known after apply: pass it in `known`")
        return self.instances(block)[key].eval(block.attributes[attr])

    def instances(self, block: Block) -> dict[Any, Evaluator]:
        """One evaluator per instance of ``block``, ``each`` bound by its ``for_each`` (a single
        instance has the key None)."""
        if "for_each" not in block.attributes:
            return {None: Evaluator(self.config, self.variables, self.known)}
        for_each = self.eval(block.attributes["for_each"])
        pairs = for_each.items() if isinstance(for_each, dict) else ((k, k) for k in for_each)
        return {k: Evaluator(self.config, self.variables, self.known, {"each": {"key": k, "value": v}})
                for k, v in pairs}

    def resolve(self, root: str, parts: list[Any]) -> Any:
        if root in self.scope:
            value = self.scope[root]
        elif root == "var":
            value, parts = self.variable(parts[0]), parts[1:]
        elif root == "local":
            value, parts = self.local(parts[0]), parts[1:]
        elif root == "data":
            address = f"data.{parts[0]}.{parts[1]}"
            if f"{address}.{parts[2]}" not in self.known:
                raise Unsupported(f"{address}.{parts[2]} must be given in `known`")
            value, parts = self.known[f"{address}.{parts[2]}"], parts[3:]
        elif root not in _SPECIAL_ROOTS:
            address = f"{root}.{parts[0]}"
            block = self.config.resources.get(address) if self.config else None
            if block is None:
                raise Unsupported(f"{address} is not a resource of the configuration")
            if "for_each" in block.attributes or "count" in block.attributes:
                value, parts = self.resource_attribute(address, parts[1], str(parts[2])), parts[3:]
            else:
                value, parts = self.resource_attribute(address, None, str(parts[1])), parts[2:]
        else:
            raise Unsupported(f"reference {root}.{parts}")
        for part in parts:
            value = value[part]
        return value

    def eval(self, node: Node | Token) -> Any:
        if isinstance(node, Token):
            raise Unsupported(f"token {node.type}")
        rule = node.data
        kids = _trees(node)
        if rule == "expr_term":
            if len(kids) != 1:
                raise Unsupported("expr_term")
            if kids[0].data == "identifier":
                name = _name(kids[0])
                if name in self.scope:
                    return self.scope[name]
                raise Unsupported(f"bare name {name}")
            return self.eval(kids[0])
        if rule in ("get_attr_expr_term", "index_expr_term"):
            chain = _reference_chain(node)
            if chain is None:
                raise Unsupported(rule)
            root, parts, dynamic = chain
            resolved = [self.eval(dynamic.pop(0)) if p == "*" else p for p in parts]
            return self.resolve(root, resolved)
        if rule == "string":
            return "".join(self._string_part(p) for p in kids)
        if rule == "int_lit":
            return int(str(node.children[0]))
        if rule == "float_lit":
            return float(str(node.children[0]))
        if rule == "literal_value":
            return {"true": True, "false": False, "null": None}[str(node.children[0])]
        if rule == "tuple":
            return [self.eval(k) for k in kids]
        if rule == "object":
            result = {}
            for elem in kids:
                key_node, value_node = _trees(elem)
                (key_expr,) = _trees(key_node)
                (inner,) = _trees(key_expr) if key_expr.data == "expr_term" else (key_expr,)
                key = _name(inner) if inner.data == "identifier" else self.eval(key_expr)
                result[key] = self.eval(value_node)
            return result
        if rule == "function_call":
            name = _name(kids[0])
            if name == "can":  # true when its argument evaluates without an error
                try:
                    self.eval(_trees(kids[1])[0])
                except (EvaluationError, KeyError, IndexError, TypeError):
                    return False
                return True
            args = [self.eval(a) for a in _trees(kids[1])] if len(kids) > 1 else []
            if name not in _FUNCTIONS:
                raise Unsupported(f"function {name}()")
            return _FUNCTIONS[name](*args)
        if rule == "conditional":
            condition, yes, no = kids
            return self.eval(yes) if self.eval(condition) else self.eval(no)
        if rule == "binary_op":
            left, term = kids[0], kids[1]
            operator_node, right = _trees(term)
            operator = str(operator_node.children[0])
            return _BINARY[operator](self.eval(left), self.eval(right))
        if rule == "unary_op":
            operator = str(node.children[0])
            value = self.eval(kids[0])
            return (not value) if operator == "!" else -value
        if rule in ("for_tuple_expr", "for_object_expr"):
            return self._for(node, rule == "for_object_expr")
        raise Unsupported(rule)

    def _string_part(self, part: Node) -> str:
        (inner,) = part.children
        if isinstance(inner, Token):
            if inner.type == "ESCAPED_INTERPOLATION":
                return str(inner)[1:]  # $${x} is a literal ${x}
            return _unescape(str(inner))
        (expr,) = _trees(inner)
        return _tostring(self.eval(expr))

    def _for(self, node: Node, as_object: bool) -> Any:
        intro, *body = _trees(node)
        names = [_name(c) for c in _trees(intro) if c.data == "identifier"]
        (collection_node,) = [c for c in _trees(intro) if c.data != "identifier"]
        collection = self.eval(collection_node)
        items = list(collection.items()) if isinstance(collection, dict) else list(enumerate(collection))
        condition = body[-1] if body and body[-1].data == "for_cond" else None
        exprs = [b for b in body if b.data != "for_cond"]
        out: Any = {} if as_object else []
        for key, value in items:
            bound = {names[0]: value} if len(names) == 1 else {names[0]: key, names[1]: value}
            inner = Evaluator(self.config, self.variables, self.known, {**self.scope, **bound})
            if condition is not None and not inner.eval(_trees(condition)[0]):
                continue
            if as_object:
                out[inner.eval(exprs[0])] = inner.eval(exprs[1])
            else:
                out.append(inner.eval(exprs[0]))
        return out


def validation_errors(config: Config, name: str, value: Any) -> list[str]:
    """The error messages of ``variable "name"``'s validation blocks that ``value`` fails."""
    evaluator = Evaluator(config, {name: value})
    failed = []
    for rule in config.variables[name].nested("validation"):
        if not evaluator.eval(rule.attributes["condition"]):
            failed.append(evaluator.eval(rule.attributes["error_message"]))
    return failed
