"""Rules a table mapping and its field mappings must keep, checked before anything is saved.

The checks work on the plain-data form of a mapping (mappings.serialization), so the admin forms, the import and
the reset all apply the same rules. Names, types and lengths are checked against the connections' metadata when
a `MetadataCache` is given; when a system's metadata cannot be read, that is reported as a warning that says the
names were not checked (never silently passed).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from odata_query import ast as odata_ast
from odata_query.exceptions import ODataException
from odata_query.grammar import ODataLexer, ODataParser

from connectors.odata import describe_syntax_error
from connectors.types import ColumnInfo, TableInfo
from mappings.choices import (
    PERMANENT_ERROR_CLASSES,
    SIDE_LABEL,
    TRANSIENT_ERROR_CLASSES,
    DeletionConflictResolution,
    DeletionPolicy,
    Direction,
    Side,
    UpdateConflictResolution,
)
from mappings.metadata import MetadataCache, MetadataUnavailable, did_you_mean
from mappings.models import COMPANY_ENTITY_SET
from mappings.transformations import validate_rules

TEXT_TYPES = {"string", "memo"}
CHOICE_TYPES = {"choice", "enum"}
TYPE_GROUPS = {
    "string": "text",
    "memo": "text",
    "enum": "text",  # Business Central enums travel as strings
    "integer": "number",
    "decimal": "number",
    "money": "number",
    "choice": "number",  # Dataverse choices are whole numbers
    "boolean": "boolean",
    "datetime": "datetime",
    "guid": "guid",
    "lookup": "guid",
}
LITERAL_GROUPS: dict[type[odata_ast._Node], str] = {
    odata_ast.String: "text",
    odata_ast.Integer: "number",
    odata_ast.Float: "number",
    odata_ast.Boolean: "boolean",
    odata_ast.DateTime: "datetime",
    odata_ast.Date: "datetime",
    odata_ast.GUID: "guid",
}
DIRECTION_LABEL = dict(Direction.choices)


@dataclasses.dataclass(frozen=True)
class Problem:
    """One broken rule. `field` is the form field it belongs to; `row` the field mapping's index, if any."""

    message: str
    field: str = ""
    row: int | None = None
    warning: bool = False

    def __str__(self):
        return self.message


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if not p.warning]


def warnings(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.warning]


# --------------------------------------------------------------------------------------------------------------
# Whole mapping
# --------------------------------------------------------------------------------------------------------------


def validate_mapping(
    data: dict[str, Any],
    *,
    metadata: MetadataCache | None = None,
    dependency_graph: dict[str, set[str]] | None = None,
    lookup_tables: dict[str, str] | None = None,
) -> list[Problem]:
    """Check a whole mapping (table settings and field mappings); see validate_table and validate_field_mappings."""
    return (
        validate_table(data, metadata=metadata, dependency_graph=dependency_graph)
        + validate_field_mappings(data, metadata=metadata, lookup_tables=lookup_tables)
        + validate_new_record_templates(data, metadata=metadata)
    )


def validate_new_record_templates(data: dict[str, Any], *, metadata: MetadataCache | None = None) -> list[Problem]:
    """Check each template's filter as the mapping's filters are checked (on the source record's table) and its
    values as the mapping's values for new records (on the target's table). `row` is the template's index."""
    problems: list[Problem] = []
    tables: dict[str, TableInfo | None] = {}
    table_keys: tuple[tuple[Side, str], ...] = (("bc", "bc_entity_set"), ("dataverse", "dataverse_entity_set"))
    for side, key in table_keys:
        tables[side], _ = _table(metadata, side, data.get(key) or "", key)  # an unknown table is the table's error
    for row, template in enumerate(data.get("new_record_templates") or []):
        target = template.get("target")
        if target not in ("bc", "dataverse"):
            problems.append(Problem("Choose the system the new records are created in.", field="target", row=row))
            continue
        source = "dataverse" if target == "bc" else "bc"
        found = check_filter(template.get("source_filter") or "", tables[source], side=source, field="source_filter")
        found += _check_new_record_values(template.get("values"), tables[target], target, "values")
        problems += [dataclasses.replace(problem, row=row) for problem in found]
    return problems


def validate_table(
    data: dict[str, Any], *, metadata: MetadataCache | None = None, dependency_graph: dict[str, set[str]] | None = None
) -> list[Problem]:
    """Check the table mapping's own settings: choices, filters, values for new records, dependencies."""
    problems: list[Problem] = []
    problems += _check_choice(data, "direction", Direction)
    problems += _check_choice(data, "update_conflict_resolution", UpdateConflictResolution)
    problems += _check_choice(data, "deletion_conflict_resolution", DeletionConflictResolution)
    problems += _check_choice(data, "deletions_to_dataverse", DeletionPolicy)
    problems += _check_choice(data, "deletions_from_dataverse", DeletionPolicy)
    share = data.get("deletion_safety_percent", 5)
    if not isinstance(share, int) or isinstance(share, bool) or not 0 <= share <= 100:
        problems.append(
            Problem(
                f"Deletion safety percent {share!r} is not a whole number from 0 to 100.",
                field="deletion_safety_percent",
            )
        )
    tables = {}
    table_keys: tuple[tuple[Side, str], ...] = (("bc", "bc_entity_set"), ("dataverse", "dataverse_entity_set"))
    for side, key in table_keys:
        table, problem = _table(metadata, side, data.get(key) or "", key)
        tables[side] = table
        if problem:
            problems.append(problem)
    problems += check_filter(data.get("table_filter") or "", tables["bc"], side="bc", field="table_filter")
    problems += check_filter(
        data.get("integration_table_filter") or "",
        tables["dataverse"],
        side="dataverse",
        field="integration_table_filter",
    )
    for side, key in (("bc", "bc_new_record_values"), ("dataverse", "dataverse_new_record_values")):
        problems += _check_new_record_values(data.get(key), tables[side], side, key)
    problems += check_skip_policy(data.get("skip_after_failures", {}))
    for side, key in (
        ("bc", "bc_name_field"),
        ("dataverse", "dataverse_name_field"),
        ("dataverse", "dataverse_primary_key"),
    ):
        problems += _check_column_name(data.get(key) or "", tables[side], side, key)
    problems += _check_company_column(data.get("dataverse_company_field") or "", tables["dataverse"])
    if dependency_graph is not None:
        problems += check_dependency_cycle(data["name"], set(data.get("dependencies") or []), dependency_graph)
    return problems


def _check_company_column(name: str, table: TableInfo | None) -> list[Problem]:
    """The company column is a lookup to Business Central's company table, which the runs stamp and filter on."""
    key = "dataverse_company_field"
    if table is None or not name:
        return []
    column = _column(table, name)
    if column is None:
        return [Problem(_unknown_column(name, table, "dataverse"), field=key)]
    # Metadata names a lookup's targets by logical name (cdm_company); the Web API's entity set is cdm_companies.
    company_table = {COMPANY_ENTITY_SET, "cdm_company"}
    if column.type != "lookup" or (column.lookup_targets and not company_table & set(column.lookup_targets)):
        targets = f" to {', '.join(column.lookup_targets)}" if column.lookup_targets else ""
        return [
            Problem(
                f"{name} is a {column.type}{targets}, not a lookup to the company table {COMPANY_ENTITY_SET} "
                "(Business Central's bcbi_companyid).",
                field=key,
            )
        ]
    return []


def _check_choice(data, key, choices) -> list[Problem]:
    value = data.get(key, "")
    if value not in choices.values:
        allowed = ", ".join(repr(v) for v in choices.values)
        return [Problem(f"{key.replace('_', ' ').capitalize()} {value!r} is not one of {allowed}.", field=key)]
    return []


def _table(
    metadata: MetadataCache | None, side: Side, entity_set: str, key: str
) -> tuple[TableInfo | None, Problem | None]:
    """Return the table's metadata, or None with a problem: an error for an unknown table, else a warning."""
    if metadata is None or not entity_set:
        return None, None
    try:
        return metadata.table(side, entity_set), None
    except MetadataUnavailable as exc:
        return None, Problem(exc.message, field=key, warning=not exc.unknown_table)


def _check_column_name(name: str, table: TableInfo | None, side: str, key: str) -> list[Problem]:
    if table is None or not name or _column(table, name) is not None:
        return []
    return [Problem(_unknown_column(name, table, side), field=key)]


def _unknown_column(name: str, table: TableInfo, side: str) -> str:
    return f"{SIDE_LABEL[side]} table {table.entity_set} has no field {name!r}.{did_you_mean(name, table.columns)}"


def _column(table: TableInfo, name: str) -> ColumnInfo | None:
    """Find a column by name; Dataverse lookups are also known by their read form `_x_value`."""
    if name in table.columns:
        return table.columns[name]
    if name.startswith("_") and name.endswith("_value"):
        column = table.columns.get(name[1:-6])
        if column is not None and column.type == "lookup":
            return column
    return None


def check_skip_policy(policy: Any) -> list[Problem]:
    """The skip policy: {permanent error class: identical failures before skipping (0 = never), 0 to 100}."""
    key = "skip_after_failures"
    if not isinstance(policy, dict):
        return [Problem('The skip policy must be a JSON object, e.g. {"validation": 3, "conflict": 0}.', field=key)]
    problems = []
    for name, count in policy.items():
        if name in TRANSIENT_ERROR_CLASSES:
            problems.append(
                Problem(
                    f"{name!r} errors are transient: they are never skipped but retried, so they take no skip count.",
                    field=key,
                )
            )
        elif name not in PERMANENT_ERROR_CLASSES:
            problems.append(
                Problem(
                    f"{name!r} is no error class; use one of {', '.join(PERMANENT_ERROR_CLASSES)}.",
                    field=key,
                )
            )
        elif isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 100:
            problems.append(
                Problem(f"{name}: the number of failures must be a whole number from 0 (never skip) to 100.", field=key)
            )
    return problems


def _check_new_record_values(values: Any, table: TableInfo | None, side: str, key: str) -> list[Problem]:
    if not isinstance(values, dict):
        return [Problem('Values for new records must be a JSON object, e.g. {"customertypecode": 3}.', field=key)]
    problems = []
    for name, value in values.items():
        if table is None:
            continue
        column = _column(table, name)
        if column is None:
            problems.append(Problem(_unknown_column(name, table, side), field=key))
        else:
            problems += [
                Problem(f"Values for new records: {message}", field=key) for message in _value_fits(value, column)
            ]
    return problems


def _value_fits(value: Any, column: ColumnInfo) -> list[str]:
    """Say why a literal value cannot be written to the column (wrong option, too long), if it cannot."""
    if value in (None, ""):
        return []
    known = {str(option) for option in column.options}
    if column.options and column.type in CHOICE_TYPES and str(value) not in known:
        return [f"{value!r} is not an option of {column.name} ({_options_text(column)})."]
    if column.type in TEXT_TYPES and column.max_length and len(str(value)) > column.max_length:
        return [
            f"{value!r} is {len(str(value))} characters long, longer than the {column.max_length} that "
            f"{column.name} takes."
        ]
    return []


def _options_text(column: ColumnInfo, limit: int = 12) -> str:
    items = list(column.options.items())[:limit]
    text = ", ".join(str(value) if str(value) == str(label) else f"{value} {label}" for value, label in items)
    return text + (", ..." if len(column.options) > limit else "")


# --------------------------------------------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------------------------------------------


def parse_filter(expression: str):
    """Parse an OData $filter expression; raise ODataException with the parser's reason when it is not valid."""
    return ODataParser().parse(ODataLexer().tokenize(expression))


# A filter is sent in the URL of every read: Dataverse caps a GET URL at 32 KB (protocols.md 1.1, from Microsoft's
# "Compose HTTP requests and handle errors"), and a read by ids adds up to ~5 KB of `id eq ...` to it.
MAX_FILTER_LENGTH = 8000


def check_filter(expression: str, table: TableInfo | None, *, side: str, field: str) -> list[Problem]:
    """Check a filter's syntax, and with metadata its field names and the types of the values compared with them."""
    if not expression.strip():
        return []
    label = "Table filter" if side == "bc" else "Integration table filter"
    if len(expression) > MAX_FILTER_LENGTH:
        return [
            Problem(
                f"{label} is {len(expression):,} characters long; at most {MAX_FILTER_LENGTH:,} are accepted: it "
                "goes into the URL of every read, which Dataverse caps at 32 KB with the record ids syncadmin adds.",
                field=field,
            )
        ]
    try:
        tree = parse_filter(expression)
    except ODataException as exc:
        return [Problem(f"{label} is not a valid OData filter: {describe_syntax_error(expression, exc)}", field=field)]
    except RecursionError:
        return [Problem(f"{label} nests too deeply to be read: use fewer parentheses.", field=field)]
    problems = [Problem(f"{label}: {message}", field=field) for message in _unsupported_functions(tree, side)]
    if side == "bc":
        problems += [Problem(f"{label}: {message}", field=field) for message in _bc_or_across_fields(tree)]
    if table is None:
        return problems
    for node in _walk(tree):
        if isinstance(node, odata_ast.Identifier) and _column(table, node.name) is None:
            problems.append(Problem(f"{label}: {_unknown_column(node.name, table, side)}", field=field))
        elif isinstance(node, odata_ast.Compare):
            problems += [Problem(f"{label}: {message}", field=field) for message in _compare_types(node, table)]
    return problems


# The functions each service takes in `$filter` (protocols.md 1.4 for Dataverse, 2.3 for Business Central): anything
# else is refused by the service at the first read, so it is refused here when the mapping is saved.
FILTER_FUNCTIONS = {
    "bc": ("contains", "endswith", "startswith", "substring", "tolower", "toupper"),
    "dataverse": ("contains", "endswith", "startswith"),
}


def _unsupported_functions(tree, side: str) -> list[str]:
    supported = FILTER_FUNCTIONS[side]
    used = sorted(
        {
            node.func.full_name()
            for node in _walk(tree)
            if isinstance(node, odata_ast.Call) and node.func.full_name() not in supported
        }
    )
    system = SIDE_LABEL[side]
    return [
        f"{system} does not support the function {name}() in filters; it supports "
        f"{', '.join(supported[:-1])} and {supported[-1]}."
        for name in used
    ]


def _bc_or_across_fields(tree) -> list[str]:
    """Business Central refuses `or` between conditions on different fields (protocols.md 2.3)."""
    messages = []
    for node in _walk(tree):
        if isinstance(node, odata_ast.BoolOp) and isinstance(node.op, odata_ast.Or):
            names = sorted({n.name for n in _walk(node) if isinstance(n, odata_ast.Identifier)})
            if len(names) > 1:
                messages.append(
                    f"Business Central does not support 'or' across different fields ({', '.join(names)}); "
                    "use 'or' on one field only, or split the mapping."
                )
                break
    return messages


def _walk(node):
    """Yield every node of the filter tree, skipping function names (contains, startswith, ...).

    Iterative, not recursive: a filter of a thousand conditions is a tree a thousand levels deep.
    """
    stack = [node]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, odata_ast.Call):
            children = node.args
        elif isinstance(node, odata_ast.List):
            children = node.val
        elif dataclasses.is_dataclass(node):
            children = [getattr(node, f.name) for f in dataclasses.fields(node)]
        else:
            children = []
        for child in reversed(children):
            if isinstance(child, list):
                stack.extend(item for item in reversed(child) if isinstance(item, odata_ast._Node))
            elif isinstance(child, odata_ast._Node):
                stack.append(child)


def _compare_types(node: odata_ast.Compare, table: TableInfo) -> list[str]:
    pairs = [(node.left, node.right), (node.right, node.left)]
    for identifier, other in pairs:
        if not isinstance(identifier, odata_ast.Identifier):
            continue
        column = _column(table, identifier.name)
        if column is None:
            return []
        literals = other.val if isinstance(other, odata_ast.List) else [other]
        messages = []
        for literal in literals:
            group = LITERAL_GROUPS.get(type(literal))
            expected = TYPE_GROUPS.get(column.type)
            if group is None or expected is None:
                continue
            if group != expected:
                example = _example(column)
                messages.append(
                    f"{column.name} is a {column.type} field: compare it with {expected} values{example}, "
                    f"not {_literal_text(literal)}."
                )
            elif column.options and column.type in CHOICE_TYPES and not _is_option(literal, column):
                messages.append(
                    f"{_literal_text(literal)} is not an option of {column.name} ({_options_text(column)})."
                )
        return messages
    return []


def _is_option(literal, column: ColumnInfo) -> bool:
    return str(literal.val) in {str(option) for option in column.options}


def _literal_text(literal) -> str:
    return f"'{literal.val}'" if isinstance(literal, odata_ast.String) else str(literal.val)


def _example(column: ColumnInfo) -> str:
    if column.options:
        return f" ({_options_text(column)})"
    return ""


# --------------------------------------------------------------------------------------------------------------
# Several mappings on one table
# --------------------------------------------------------------------------------------------------------------

# The rule holds for the Business Central table, where Business Central's own engine silently takes "the first"
# mapping. Several mappings on one Dataverse table are told apart by their integration table filters, as the defaults
# CUSTOMER and VENDOR are on accounts (customertypecode 3 and 11).
SHARED_SIDES = (("bc", "bc_entity_set", "table_filter", "table filter"),)


def check_shared_tables(data: dict[str, Any], others: list[dict[str, Any]]) -> list[Problem]:
    """The rule that says which mapping a record belongs to when several mappings synchronize one BC table.

    A record belongs to the first mapping, by record priority (lowest first), whose filter it matches; the later
    mappings leave it alone. Refused, because a record's mapping would be unclear or a mapping would get nothing:
    two mappings of one table with the same priority, and an earlier mapping that takes every record a later one
    could (no filter, or the same filter). Business Central's own engine silently takes "the first" instead.
    """
    problems = []
    priority = data.get("record_priority") or 0
    for side, table_key, filter_key, filter_label in SHARED_SIDES:
        table = data.get(table_key) or ""
        sharing = [o for o in others if o.get(table_key) == table and o.get("name") != data.get("name")]
        for other in sorted(sharing, key=lambda o: (o.get("record_priority") or 0, o.get("name") or "")):
            where = f"{SIDE_LABEL[side]} {table}"
            other_priority = other.get("record_priority") or 0
            if other_priority == priority:
                problems.append(
                    Problem(
                        f"{other['name']} also synchronizes {where} with record priority {priority}: give the two "
                        "mappings different record priorities, so that each record belongs to one of them (the "
                        "lowest number whose filter the record matches).",
                        field="record_priority",
                    )
                )
                continue
            earlier, later = (other, data) if other_priority < priority else (data, other)
            earlier_filter = _normalized(earlier.get(filter_key))
            if not earlier_filter or earlier_filter == _normalized(later.get(filter_key)):
                reason = "has no " + filter_label if not earlier_filter else f"has the same {filter_label}"
                problems.append(
                    Problem(
                        f"{earlier['name']} comes first on {where} (record priority "
                        f"{earlier.get('record_priority') or 0}) and {reason}, so it takes every record "
                        f"{later['name']} could synchronize: give "
                        f"{earlier['name']} a narrower {filter_label}, or {later['name']} a lower record priority.",
                        field=filter_key if earlier is data else "record_priority",
                    )
                )
    return problems


def _normalized(expression: Any) -> str:
    return " ".join(str(expression or "").split())


# --------------------------------------------------------------------------------------------------------------
# Dependencies
# --------------------------------------------------------------------------------------------------------------


def check_dependency_cycle(name: str, dependencies: set[str], graph: dict[str, set[str]]) -> list[Problem]:
    """Refuse dependencies that lead back to this mapping (graph: every mapping's current dependencies)."""
    graph = {**graph, name: set(dependencies)}
    if name in dependencies:
        return [Problem(f"{name} cannot depend on itself.", field="dependencies")]
    path = _path_back(name, graph)
    if path:
        return [
            Problem(f"Dependency cycle: {' -> '.join(path)}. Remove one of these dependencies.", field="dependencies")
        ]
    return []


def _path_back(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    """Depth-first search for a path from `start` back to itself; return it, e.g. [A, B, A]."""
    stack = [(start, [start])]
    seen = set()
    while stack:
        node, path = stack.pop()
        for nxt in sorted(graph.get(node, ()), reverse=True):  # the stack then explores them in name order
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def find_cycles(graph: dict[str, set[str]]) -> list[Problem]:
    """Check a whole set of mappings (an import) for dependency cycles; one problem per cycle found."""
    problems, reported = [], set()
    for name in sorted(graph):
        path = _path_back(name, graph)
        if path and frozenset(path) not in reported:
            reported.add(frozenset(path))
            problems.append(Problem(f"Dependency cycle: {' -> '.join(path)}.", field="dependencies"))
    return problems


# --------------------------------------------------------------------------------------------------------------
# Field mappings
# --------------------------------------------------------------------------------------------------------------


def field_label(number: int, field: dict[str, Any]) -> str:
    arrow = {"bidirectional": "<->", "to_dataverse": "->", "from_dataverse": "<-"}.get(
        field.get("direction") or "", "-"
    )
    left = field.get("bc_field") or repr(field.get("constant_value") or "")
    right = field.get("dataverse_field") or repr(field.get("constant_value") or "")
    return f"Field mapping {number} ({left} {arrow} {right})"


def validate_field_mappings(
    data: dict[str, Any], *, metadata: MetadataCache | None = None, lookup_tables: dict[str, str] | None = None
) -> list[Problem]:
    """Check each field mapping against the table's direction and both tables' metadata.

    `lookup_tables` maps each mapping name a lookup may go through to its Dataverse table, to check that the
    lookup's target table is the one the chosen mapping couples.
    """
    table_direction = data.get("direction", Direction.BIDIRECTIONAL)
    if table_direction not in Direction.values:
        return []  # validate_table reports the bad direction; field rules depend on a valid one
    fields = data.get("field_mappings") or []
    tables = {
        "bc": _quiet_table(metadata, "bc", data.get("bc_entity_set") or ""),
        "dataverse": _quiet_table(metadata, "dataverse", data.get("dataverse_entity_set") or ""),
    }
    problems: list[Problem] = []
    shorter_targets = []
    for index, field in enumerate(fields):
        label = field_label(index + 1, field)
        code_table = field.get("bc_code_table") or ""
        if code_table and metadata is not None and tables["bc"] is not None:
            codes = _quiet_table(metadata, "bc", code_table)
            if codes is None or "code" not in codes.columns:
                message = f"Business Central has no code table {code_table!r} with a code field."
                problems.append(Problem(f"{label}: {message}", field="bc_code_table", row=index))
        for key, message, *kind in _check_field(field, table_direction, tables, lookup_tables):
            if kind:
                shorter_targets.append(message)
            else:
                problems.append(Problem(f"{label}: {message}", field=key, row=index))
    if shorter_targets:
        # One warning for them all: the defaults have several (Dataverse columns are longer than BC fields).
        problems.append(
            Problem(
                f"{data.get('name')}: some texts may be longer than the field they go to, and will be refused or cut: "
                f"{', '.join(shorter_targets)}. A substring transformation makes the cut explicit.",
                warning=True,
            )
        )
    problems += _check_directions_covered(table_direction, fields)
    return problems


def _quiet_table(metadata: MetadataCache | None, side: Side, entity_set: str) -> TableInfo | None:
    # The table-level check already reported why a table's metadata is missing; here we only use what is there.
    if metadata is None or not entity_set:
        return None
    try:
        return metadata.table(side, entity_set)
    except MetadataUnavailable:
        return None


def _field_directions(direction: str) -> list[str]:
    """The concrete directions a field transfers in: to_dataverse and/or from_dataverse."""
    if direction == Direction.BIDIRECTIONAL:
        return [Direction.TO_DATAVERSE, Direction.FROM_DATAVERSE]
    return [direction]


def _allowed_field_directions(table_direction: str) -> set[str]:
    if table_direction == Direction.BIDIRECTIONAL:
        return set(Direction.values)
    return {table_direction, Direction.BIDIRECTIONAL}


def _check_directions_covered(table_direction: str, fields: list[dict]) -> list[Problem]:
    problems = []
    enabled = [f for f in fields if f.get("enabled", True)]
    for direction in _field_directions(table_direction):
        if not any(direction in _field_directions(f.get("direction") or "") for f in enabled):
            problems.append(
                Problem(
                    f"The mapping syncs {DIRECTION_LABEL[direction]} but no enabled field mapping does: set the "
                    f"direction of at least one enabled field mapping to {DIRECTION_LABEL[direction]} "
                    f"or {DIRECTION_LABEL[Direction.BIDIRECTIONAL]}.",
                    field="direction",
                )
            )
    return problems


def _check_field(
    field: dict, table_direction: str, tables: dict[str, TableInfo | None], lookup_tables: dict[str, str] | None
):
    """Yield (form field, message) for each problem of one field mapping."""
    direction = field.get("direction")
    if direction not in Direction.values:
        yield "direction", f"direction {direction!r} is not one of {', '.join(Direction.values)}."
        return
    if direction not in _allowed_field_directions(table_direction):
        yield (
            "direction",
            f"direction {DIRECTION_LABEL[direction]} is not allowed in a mapping that syncs "
            f"{DIRECTION_LABEL[table_direction]} only.",
        )
    for message in validate_rules(field.get("transformation", [])):
        yield "transformation", f"transformation: {message}"
    value_map = field.get("value_map", {})
    if not isinstance(value_map, dict):
        yield (
            "value_map",
            'value map must be a JSON object of Business Central value to Dataverse value, e.g. {"NET30": 1}.',
        )
        value_map = {}
    if field.get("clear_value_on_failed_lookup") and field.get("not_null"):
        yield "not_null", "choose either clear value on failed lookup or not null, not both."
    if field.get("use_for_matching") and not (field.get("bc_field") and field.get("dataverse_field")):
        yield (
            "use_for_matching",
            "match-based coupling compares two fields: name both a Business Central field and a Dataverse column.",
        )
    if field.get("add_missing_options") and not (field.get("bc_field") and field.get("dataverse_field")):
        yield "add_missing_options", "adding missing options needs a Business Central field and a Dataverse choice."
    if (
        field.get("add_missing_options")
        and direction in (Direction.FROM_DATAVERSE, Direction.BIDIRECTIONAL)
        and not field.get("bc_code_table")
    ):
        yield (
            "bc_code_table",
            "From Dataverse, adding missing options needs the Business Central code table to add the codes to "
            "(for example paymentTerms).",
        )
    if field.get("clear_value_on_failed_lookup") and not field.get("lookup_mapping"):
        yield "clear_value_on_failed_lookup", "clear value on failed lookup needs a lookup mapping."
    bc_name, dv_name = field.get("bc_field") or "", field.get("dataverse_field") or ""
    constant = field.get("constant_value") or ""
    if not bc_name and not dv_name:
        yield "bc_field", "name a Business Central field, a Dataverse column, or both."
        return
    for concrete in _field_directions(direction):
        source_key, target_key = ("bc_field", "dataverse_field")
        if concrete == Direction.FROM_DATAVERSE:
            source_key, target_key = target_key, source_key
        if not field.get(target_key):
            yield target_key, f"{DIRECTION_LABEL[concrete]} needs a {_side_name(target_key)} to write to."
        elif not field.get(source_key) and not constant:
            yield source_key, f"{DIRECTION_LABEL[concrete]} needs a {_side_name(source_key)} or a constant value."
    yield from _check_names(field, tables)
    if field.get("enabled", True):  # a disabled mapping may wait for its value map (e.g. payment terms)
        yield from _check_types(field, tables, value_map, lookup_tables)


def _side_name(key: str) -> str:
    return "Business Central field" if key == "bc_field" else "Dataverse column"


def _check_names(field: dict, tables: dict[str, TableInfo | None]):
    for side, key in (("bc", "bc_field"), ("dataverse", "dataverse_field")):
        name, table = field.get(key) or "", tables[side]
        if name and table is not None and _column(table, name) is None:
            yield key, _unknown_column(name, table, side)


def _check_types(field: dict, tables, value_map: dict, lookup_tables: dict[str, str] | None):
    bc_table, dv_table = tables["bc"], tables["dataverse"]
    bc_col = _column(bc_table, field.get("bc_field") or "") if bc_table else None
    dv_col = _column(dv_table, field.get("dataverse_field") or "") if dv_table else None
    lookup = field.get("lookup_mapping")
    constant = field.get("constant_value") or ""
    # A Dataverse lookup column can only be filled through the couplings of the mapping of its target table.
    if dv_col is not None and dv_col.type == "lookup":
        if not lookup:
            targets = ", ".join(dv_col.lookup_targets) or "another table"
            yield "lookup_mapping", f"{dv_col.name} is a lookup to {targets}: choose the mapping to resolve it through."
        elif (
            dv_col.lookup_targets
            and lookup_tables
            and lookup_tables.get(lookup, dv_col.lookup_targets[0]) not in (dv_col.lookup_targets)
        ):
            yield (
                "lookup_mapping",
                f"{dv_col.name} points to {', '.join(dv_col.lookup_targets)}, but {lookup} couples "
                f"{lookup_tables[lookup]}.",
            )
    if field.get("add_missing_options") and dv_col is not None and dv_col.type != "choice":
        yield (
            "add_missing_options",
            f"adding missing options needs a Dataverse choice column; {dv_col.name} is a {dv_col.type} column.",
        )
    for concrete in _field_directions(field["direction"]):
        source, target = (bc_col, dv_col) if concrete == Direction.TO_DATAVERSE else (dv_col, bc_col)
        source_key, target_key = ("bc_field", "dataverse_field")
        if concrete == Direction.FROM_DATAVERSE:
            source_key, target_key = target_key, source_key
        if target is None:
            continue
        if target.read_only:
            side = "Dataverse column" if target_key == "dataverse_field" else "Business Central field"
            yield target_key, f"{side} {target.name} is read-only: {DIRECTION_LABEL[concrete]} cannot write to it."
            continue
        if constant and not field.get(source_key):
            for message in _value_fits(constant, target):
                yield "constant_value", f"constant value {message}"
            continue
        if source is None:
            continue
        if value_map and target.options and target.type in CHOICE_TYPES:
            mapped = value_map.values() if concrete == Direction.TO_DATAVERSE else value_map.keys()
            known = {str(option) for option in target.options}
            wrong = [value for value in mapped if str(value) not in known]
            if wrong:
                yield (
                    "value_map",
                    f"value map: {', '.join(repr(w) for w in wrong)} "
                    f"{'is not an option' if len(wrong) == 1 else 'are not options'} of {target.name} "
                    f"({_options_text(target)}).",
                )
        appends = field.get("add_missing_options") and (
            concrete == Direction.TO_DATAVERSE or field.get("bc_code_table")
        )
        if target.type in CHOICE_TYPES and source.type != target.type and not value_map and not lookup and not appends:
            yield (
                "value_map",
                f"{source.name} ({source.type}) cannot be written to the {target.type} {target.name} without a value "
                f"map; add one, e.g. {json.dumps(_value_map_example(target, concrete))}.",
            )
        if not value_map and not lookup:
            mismatch = _incompatible(source, target)
            if mismatch:
                yield target_key, mismatch
        both_texts = target.type in TEXT_TYPES and source.type in TEXT_TYPES
        longer = both_texts and (source.max_length or 0) > (target.max_length or source.max_length or 0)
        if (
            longer
            and target.max_length is not None
            and not _truncates_to(field.get("transformation") or [], target.max_length)
        ):
            # A warning, not an error: BC truncates too, and most values are shorter than the column.
            yield target_key, f"{source.name} ({source.max_length}) -> {target.name} ({target.max_length})", "length"


GROUP_WORDS = {"text": "text", "number": "a number", "boolean": "a yes/no value", "datetime": "a date and time",
               "guid": "an id"}  # fmt: skip


def _incompatible(source: ColumnInfo, target: ColumnInfo) -> str:
    """Why a source field's values cannot be written to the target field, when their types do not fit.

    Anything can be written as text; otherwise both must be of one kind (numbers, yes/no, dates, ids). Choices and
    enums have their own rule (a value map), and so do lookups (a lookup mapping).
    """
    source_group, target_group = TYPE_GROUPS.get(source.type), TYPE_GROUPS.get(target.type)
    if source_group is None or target_group is None or target.type in CHOICE_TYPES:
        return ""
    if target_group == "text" or source_group == target_group:
        return ""
    return (
        f"{source.name} ({source.type}) cannot be written to the {target.type} {target.name}: it holds "
        f"{GROUP_WORDS[source_group]}, not {GROUP_WORDS[target_group]}. Map fields of compatible types, or add a "
        "value map."
    )


def _truncates_to(rules: list, max_length: int) -> bool:
    return any(
        isinstance(rule, dict)
        and rule.get("rule") == "substring"
        and isinstance(rule.get("length"), int)
        and rule["length"] <= max_length
        for rule in rules
    )


def _value_map_example(target: ColumnInfo, direction: str) -> dict:
    option = next(iter(target.options), 1)
    return (
        {"<Business Central value>": option} if direction == Direction.TO_DATAVERSE else {option: "<Dataverse value>"}
    )
