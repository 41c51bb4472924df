"""OData query options turned into indexed SQL: `$filter` (via odata-query's parser), `$select`, `$orderby`,
and opaque keyset `$skiptoken`s.

Each service's limits are enforced here rather than silently ignored: Business Central refuses `or` across
distinct fields; Dataverse compares strings case-insensitively and has no `$skip`.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db.models import Expression, F, Q
from django.db.models.functions import Lower
from django.db.models.lookups import Exact
from odata_query import ast
from odata_query.exceptions import ODataException
from odata_query.grammar import ODataLexer, ODataParser

from sandbox import schema
from sandbox.wire import ApiError

STRING_KINDS = {"text", "code", "phone", "enum", "string", "memo"}


def iso_ms(moment: datetime) -> str:
    """The stored form of an instant: UTC, millisecond precision, fixed width (sorts like time)."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class QueryError(ApiError):
    pass


def query_error(service: str, message: str) -> ApiError:
    if service == "bc":
        return ApiError(400, "BadRequest_NotFound", message)
    return ApiError(400, "0x80060888", message)


def syntax_error(service: str, text: str) -> ApiError:
    if service == "bc":
        return ApiError(400, "BadRequest_NotFound", "Bad Request - Error in query syntax.")
    return ApiError(400, "0x80060888", f"Syntax error in '{text}'.")


def unknown_property(table: schema.Table, name: str) -> ApiError:
    message = f"Could not find a property named '{name}' on type '{table.entity_type}'."
    return query_error(table.service, message)


# --- $filter -----------------------------------------------------------------------------------------------------

_lexer = ODataLexer()
_parser = ODataParser()


def parse_filter(table: schema.Table, text: str, *, schema_version: str = "") -> Q:
    try:
        tree = _parser.parse(_lexer.tokenize(text))
    except (ODataException, ValueError, TypeError) as exc:
        raise syntax_error(table.service, text) from exc
    if tree is None:
        raise syntax_error(table.service, text)
    translator = _FilterTranslator(table, schema_version)
    q = translator.visit(tree)
    if table.service == "bc":
        _check_bc_or(tree, table)
    return q


def _fields_in(node) -> set[str]:
    if isinstance(node, ast.Identifier):
        return {node.name}
    found = set()
    for value in getattr(node, "__dict__", {}).values():
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, ast._Node):
                found |= _fields_in(item)
    return found


def _check_bc_or(tree, table: schema.Table) -> None:
    """Business Central rejects `a eq 1 or b eq 2`: an `or` may only combine conditions on one field. Walked without
    recursion, a chain of `or`s at once, as _FilterTranslator.bool_op does."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.BoolOp):
            operands = _chain(node)
            if isinstance(node.op, ast.Or) and len(set().union(*(_fields_in(o) for o in operands))) > 1:
                raise ApiError(
                    400,
                    "BadRequest_NotSupported",
                    "The 'OR' operator is not supported on distinct fields on an OData filter.",
                )
            stack += operands
        elif isinstance(node, ast.UnaryOp):
            stack.append(node.operand)


def _chain(node: ast.BoolOp) -> list:
    """The operands of a chain of one boolean operator (`a or b or c ...`, nested as the parser builds it), in order,
    found without recursion: a read of 1,000 ids is 1,000 levels deep."""
    operator = type(node.op)
    operands, stack = [], [node]
    while stack:
        current = stack.pop()
        if isinstance(current, ast.BoolOp) and isinstance(current.op, operator):
            stack += [current.right, current.left]
        else:
            operands.append(current)
    return operands


_LOOKUPS = {ast.Eq: "exact", ast.NotEq: "exact", ast.Gt: "gt", ast.GtE: "gte", ast.Lt: "lt", ast.LtE: "lte"}
_SWAPPED = {ast.Gt: ast.Lt(), ast.Lt: ast.Gt(), ast.GtE: ast.LtE(), ast.LtE: ast.GtE()}


@dataclass
class _FilterTranslator:
    table: schema.Table
    schema_version: str = ""

    @property
    def service(self) -> str:
        return self.table.service

    def visit(self, node) -> Q:
        if isinstance(node, ast.BoolOp):
            return self.bool_op(node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return ~self.visit(node.operand)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Identifier):
            column = self.column(node)
            if column.kind == "boolean":
                return Q(**{self.table.storage(column): True})
        raise query_error(self.service, "The query specified in the URI is not valid: unsupported expression.")

    def bool_op(self, node: ast.BoolOp) -> Q:
        """A chain `a or b or c ...` (or of `and`s) as one Q. Its `eq`s on one column become one `__in`: SQLite
        refuses an expression tree deeper than 1,000 (SQLITE_MAX_EXPR_DEPTH), which 1,000 `OR`ed comparisons are."""
        is_and = isinstance(node.op, ast.And)
        terms = [self.visit(operand) for operand in _chain(node)]
        if not is_and:
            terms = _equalities_as_in(terms)
        combined = terms[0]
        for term in terms[1:]:
            combined = (combined & term) if is_and else (combined | term)
        return combined

    def column(self, node) -> schema.Column:
        if isinstance(node, ast.Attribute):
            raise query_error(self.service, "Navigation properties are not supported in $filter by this emulator.")
        if not isinstance(node, ast.Identifier) or node.namespace:
            raise query_error(self.service, "The query specified in the URI is not valid.")
        column = self.table.column(node.name)
        if column is None:
            raise unknown_property(self.table, node.name)
        return column

    def compare(self, node: ast.Compare) -> Q:
        comparator, left, right = node.comparator, node.left, node.right
        if isinstance(comparator, ast.In):
            if self.service != "bc" or self.schema_version != "2.1":
                raise query_error(self.service, "The 'in' operator is not supported.")
            column = self.column(left)
            if not isinstance(right, ast.List):
                raise syntax_error(self.service, "in")
            values = [self.value(column, item) for item in right.val]
            return Q(**{f"{self.table.storage(column)}__in": values})
        if not isinstance(left, ast.Identifier) and isinstance(right, ast.Identifier):
            left, right = right, left
            comparator = _SWAPPED.get(type(comparator), comparator)
        column = self.column(left)
        field = self.table.storage(column)
        if isinstance(right, ast.Identifier):
            other = self.column(right)
            if self.service == "bc":
                raise query_error(self.service, "Comparing two fields is not supported.")
            if self.case_insensitive(column) and isinstance(comparator, ast.Eq | ast.NotEq):
                q = Q(Exact(Lower(F(field)), Lower(F(self.table.storage(other)))))
            else:
                q = Q(**{f"{field}__{_LOOKUPS[type(comparator)]}": F(self.table.storage(other))})
            return ~q if isinstance(comparator, ast.NotEq) else q
        value = self.value(column, right)
        if value is None:
            if not isinstance(comparator, ast.Eq | ast.NotEq):
                raise query_error(self.service, "null can only be compared with eq or ne.")
            q = Q(**{f"{field}__isnull": True})
            return ~q if isinstance(comparator, ast.NotEq) else q
        lookup = _LOOKUPS[type(comparator)]
        if self.case_insensitive(column) and lookup == "exact":
            lookup = "iexact"
        q = Q(**{f"{field}__{lookup}": value})
        return ~q if isinstance(comparator, ast.NotEq) else q

    def case_insensitive(self, column: schema.Column) -> bool:
        return self.service == "dataverse" and column.kind in STRING_KINDS

    def call(self, node: ast.Call) -> Q:
        name = node.func.full_name()
        if name not in ("contains", "startswith", "endswith") or len(node.args) != 2:
            raise query_error(self.service, f"The function '{name}' is not supported.")
        column = self.column(node.args[0])
        if column.kind not in STRING_KINDS or not isinstance(node.args[1], ast.String):
            raise query_error(self.service, f"The function '{name}' needs a string property and a string literal.")
        value = node.args[1].val
        if column.kind == "code":
            value = value.upper()
        prefix = "i" if self.case_insensitive(column) else ""
        return Q(**{f"{self.table.storage(column)}__{prefix}{name}": value})

    def value(self, column: schema.Column, literal):
        if isinstance(literal, ast.Null):
            return None
        kind = column.kind
        if kind in STRING_KINDS and isinstance(literal, ast.String):
            return literal.val.upper() if kind == "code" else literal.val
        if kind in ("guid", "lookup") and isinstance(literal, ast.GUID):
            return literal.val.lower()
        if kind == "datetime" and isinstance(literal, ast.DateTime):
            moment = literal.py_val
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return iso_ms(moment)
        if kind == "date" and isinstance(literal, ast.Date):
            return literal.val
        if kind in ("integer", "choice") and isinstance(literal, ast.Integer):
            return int(literal.val)
        if kind in ("decimal", "money") and isinstance(literal, ast.Integer | ast.Float):
            return float(literal.val)
        if kind == "boolean" and isinstance(literal, ast.Boolean):
            return literal.py_val
        raise query_error(
            self.service,
            f"A binary operator with incompatible types was detected. Found operand types for '{column.api_name}' "
            f"({kind}) and {type(literal).__name__}.",
        )


def _equalities_as_in(terms: list[Q]) -> list[Q]:
    """`or`ed terms with the equalities of one field to a value (`field__exact`) gathered into one `field__in`.

    Only `exact` to a plain value: `iexact` (Dataverse's case-insensitive strings) has no `__in` that ignores case,
    a comparison with another field (an F expression) is no value, and a negated term (`ne`) is no equality."""
    values: dict[str, list] = {}
    others: list[Q] = []
    for term in terms:
        only = term.children[0] if len(term.children) == 1 and not term.negated else None
        field, _, lookup = only[0].rpartition("__") if isinstance(only, tuple) else ("", "", "")
        if lookup == "exact" and not isinstance(only[1], F | Expression):
            values.setdefault(field, []).append(only[1])
        else:
            others.append(term)
    gathered = [Q(**{f"{field}__in": found}) if len(found) > 1 else Q(**{f"{field}__exact": found[0]})
                for field, found in values.items()]  # fmt: skip
    return gathered + others


# --- $select / $orderby --------------------------------------------------------------------------------------------


def parse_select(table: schema.Table, text: str | None) -> list[schema.Column]:
    if not text:
        return list(table.columns)
    names = [n.strip() for n in text.split(",")]
    if not all(names):  # `$select=,name`: the services refuse an empty property name
        raise syntax_error(table.service, text)
    columns = []
    for name in names:
        column = table.column(name)
        if column is None:
            raise unknown_property(table, name)
        if column not in columns:
            columns.append(column)
    return columns


def parse_orderby(table: schema.Table, text: str | None) -> list[tuple[schema.Column, bool]]:
    if not text:
        return []
    order = []
    for part in text.split(","):
        bits = part.split()
        if not bits or len(bits) > 2 or (len(bits) == 2 and bits[1].lower() not in ("asc", "desc")):
            raise syntax_error(table.service, text)
        column = table.column(bits[0])
        if column is None:
            raise unknown_property(table, bits[0])
        order.append((column, len(bits) == 2 and bits[1].lower() == "desc"))
    return order


# --- keyset paging ---------------------------------------------------------------------------------------------------


def order_fields(table: schema.Table, order: list[tuple[schema.Column, bool]]) -> list[tuple[str, bool]]:
    """Storage fields and directions, always ending with the key so that the order is total."""
    fields = [(table.storage(c), desc) for c, desc in order if table.storage(c) != "rid"]
    key_desc = next((desc for c, desc in order if table.storage(c) == "rid"), False)
    return fields + [("rid", key_desc)]


def order_expressions(fields: list[tuple[str, bool]]):
    # Nulls first when ascending, last when descending, on every database: the keyset below relies on it. The key
    # is never null and is ordered plainly so the database can walk its index instead of sorting the table.
    return [
        (F(f).desc() if desc else F(f).asc())
        if f == "rid"
        else (F(f).desc(nulls_last=True) if desc else F(f).asc(nulls_first=True))
        for f, desc in fields
    ]


def after(fields: list[tuple[str, bool]], values: list) -> Q:
    """Rows strictly after `values` in the order `fields` (keyset pagination, no offsets)."""
    result = Q(pk__in=[])
    equal_so_far = Q()
    for (field, desc), value in zip(fields, values, strict=True):
        if desc:
            beyond = Q(pk__in=[]) if value is None else (Q(**{f"{field}__lt": value}) | Q(**{f"{field}__isnull": True}))
        else:
            beyond = Q(**{f"{field}__isnull": False}) if value is None else Q(**{f"{field}__gt": value})
        result |= equal_so_far & beyond
        equal_so_far &= Q(**{f"{field}__isnull": True}) if value is None else Q(**{field: value})
    return result


def encode_token(payload: dict) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(service: str, token: str) -> dict:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
        if not isinstance(payload, dict):
            raise ValueError(token)
        return payload
    except ValueError as exc:
        raise query_error(service, "The skip token is not valid.") from exc
