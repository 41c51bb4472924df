"""Small structured editors for JSON form fields: a list of rows instead of a JSON text box.

Each widget renders as a one-line summary that opens (a `<details>` element) into a small form of rows floating over
the page, so a grid of many such fields stays narrow. What it posts is turned back into the same JSON the field
always took, so validation, storage and the export format do not change; a client that posts the JSON text itself
under the field's own name (scripts, tests) is still understood.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.utils.html import format_html, format_html_join

ROWS_SUFFIX = "__rows"  # the hidden input that says "the rows were posted", with their number


def scalar_from_text(text: str) -> Any:
    """A typed value: numbers, true/false and null as JSON reads them, anything else as the text itself.

    A text that would read as a number is kept as text by quoting it ("1"), which is how `scalar_text` shows it.
    """
    text = text.strip()
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str | int | float | bool) or value is None else text


def scalar_text(value: Any) -> str:
    """The inverse of `scalar_from_text`: the text to show for a value so that it reads back the same."""
    if isinstance(value, str):
        return value if scalar_from_text(value) == value and not value.startswith('"') else json.dumps(value)
    return json.dumps(value)


def _loaded(value: Any, kind: type) -> Any:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, kind) else None


class RowsWidget(forms.Widget):
    """Base: a summary that opens into rows of inputs; subclasses say which columns a row has and how to read it."""

    try_url = ""  # a page to try the value on, linked under the rows when set
    spare_rows = 3  # empty rows offered for new entries (the form offers more each time it is saved)
    help_text = ""

    class Media:
        css = {"all": ["adminkit/rows.css"]}
        js = ["adminkit/rows.js"]

    # Subclass interface ------------------------------------------------------------------------------------
    def rows_of(self, value: Any) -> list[dict[str, str]] | None:
        """The rows (column -> text) of a stored value; None when the value is not of the expected shape."""
        raise NotImplementedError

    def value_of(self, rows: list[dict[str, str]]) -> Any:
        """The JSON value the posted rows make."""
        raise NotImplementedError

    def summary(self, rows: list[dict[str, str]]) -> str:
        raise NotImplementedError

    def cells(self, name: str, index: int, row: dict[str, str]) -> str:
        raise NotImplementedError

    headings: tuple[str, ...] = ()

    # Rendering and reading ---------------------------------------------------------------------------------
    def render(self, name, value, attrs=None, renderer=None):
        rows = self.rows_of(value)
        if rows is None:  # not of the expected shape (e.g. invalid JSON posted as text): show it as it was sent
            return format_html(
                '<textarea name="{}" rows="2" cols="24" class="rows-raw">{}</textarea>', name, value or ""
            )
        every = rows + [{} for _ in range(self.spare_rows)]
        body = format_html_join("", "<tr>{}</tr>", ((self.cells(name, index, row),) for index, row in enumerate(every)))
        heads = format_html_join("", "<th>{}</th>", ((h,) for h in self.headings))
        widget_id = (attrs or {}).get("id", "")
        return format_html(
            '<details class="rows-widget" id="{}"><summary>{}</summary><div class="rows-pop">'
            "<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>"
            '<input type="hidden" name="{}{}" value="{}"><p class="help">{}</p>{}</div></details>',
            widget_id,
            self.summary(rows) or "none",
            heads,
            body,
            name,
            ROWS_SUFFIX,
            len(every),
            self.help_text,
            format_html('<p><a href="{}">Try the saved rules on a value</a></p>', self.try_url) if self.try_url else "",
        )

    def value_from_datadict(self, data, files, name):
        count = data.get(name + ROWS_SUFFIX)
        if count is None:
            return data.get(name)  # the JSON text itself
        try:
            count = min(int(count), 500)
        except ValueError:
            return data.get(name)
        rows = [self.posted_row(data, name, index) for index in range(count)]
        return json.dumps(self.value_of([row for row in rows if any(v.strip() for v in row.values())]))

    def posted_row(self, data, name: str, index: int) -> dict[str, str]:
        prefix = f"{name}__{index}__"
        return {key[len(prefix) :]: data.get(key, "") for key in data if key.startswith(prefix)}

    def value_omitted_from_data(self, data, files, name):
        return name + ROWS_SUFFIX not in data and name not in data


class KeyValueWidget(RowsWidget):
    """A JSON object edited as rows of key and value (e.g. a value map: Business Central value -> Dataverse value)."""

    def __init__(self, key_label: str = "key", value_label: str = "value", attrs=None):
        super().__init__(attrs)
        self.headings = (key_label, value_label)
        self.help_text = (
            f"One row per {key_label}; an empty {key_label} removes the row. Numbers, true, false and null are "
            'read as such; put a text that looks like one in quotes ("1").'
        )

    def rows_of(self, value):
        loaded = _loaded(value, dict) if value not in (None, "") else {}
        if loaded is None:
            return None
        return [{"key": str(key), "value": scalar_text(item)} for key, item in loaded.items()]

    def value_of(self, rows):
        return {row.get("key", "").strip(): scalar_from_text(row.get("value", "")) for row in rows if row.get("key")}

    def duplicate_keys(self, data, name) -> list[str]:
        """Keys posted in more than one row (a JSON object keeps only one of them), for the form to refuse."""
        try:
            count = min(int(data.get(name + ROWS_SUFFIX, 0)), 500)
        except ValueError:
            return []
        keys = [self.posted_row(data, name, index).get("key", "").strip() for index in range(count)]
        return sorted({key for key in keys if key and keys.count(key) > 1})

    def summary(self, rows):
        text = ", ".join(f"{row['key']} → {row['value']}" for row in rows)
        return text if len(text) <= 28 else text[:26] + "…"

    def cells(self, name, index, row):
        return format_html(
            '<td><input name="{0}__{1}__key" value="{2}" size="12"></td>'
            '<td><input name="{0}__{1}__value" value="{3}" size="12"></td>',
            name,
            index,
            row.get("key", ""),
            row.get("value", ""),
        )
