import types

import pytest
from django.urls import reverse

from mappings.models import TableMapping


@pytest.fixture
def sandbox_in_process(sandbox_http):
    """Every connector client talks to the sandbox in this process, over real HTTP semantics (no socket): the root
    conftest's transport, which also serves the engine's own threads (parallel writes, read-ahead) on the test's
    database connections."""
    return sandbox_http


@pytest.fixture
def sandbox_connections(sandbox_in_process, make_sandbox_connections):
    """A small seeded sandbox and the two connections pointing at it, reached in-process over HTTP."""
    return make_sandbox_connections("http://testserver")


@pytest.fixture
def change_form():
    """Helpers that build the table mapping change form's POST data from what the admin renders."""
    return types.SimpleNamespace(
        data=change_form_data, field_key=field_key, add_row=add_field_row, add_template=add_template_row
    )


# Building the change form's POST data from what the admin itself renders.


def _bound_values(form) -> dict:
    data = {}
    for name in form.fields:
        value = form[name].value()
        key = form.add_prefix(name)
        if isinstance(value, bool):
            if value:
                data[key] = "on"
        elif isinstance(value, list | tuple):
            data[key] = [str(v) for v in value]
        elif value is None:
            data[key] = ""
        else:
            data[key] = str(value)
    return data


def change_form_data(client, name: str) -> tuple[str, dict]:
    """Return the change form's URL and the data it would submit unchanged (existing inline rows only)."""
    mapping = TableMapping.objects.get(name=name)
    url = reverse("admin:mappings_tablemapping_change", args=[mapping.pk])
    response = client.get(url)
    assert response.status_code == 200
    data = _bound_values(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:  # field mappings first, then templates for new records
        formset = inline.formset
        for key, value in _bound_values(formset.management_form).items():
            data[key] = value
        initial = formset.initial_form_count()
        data[formset.management_form.add_prefix("TOTAL_FORMS")] = str(initial)
        for form in formset.forms[:initial]:
            data.update(_bound_values(form))
    return url, data


def field_key(data: dict, bc_field: str, dataverse_field: str, name: str) -> str:
    """The POST key of one field mapping row's input, found by the row's two sides."""
    for key, value in data.items():
        if key.endswith("-bc_field") and value == bc_field:
            prefix = key[: -len("bc_field")]
            if data.get(prefix + "dataverse_field") == dataverse_field:
                return prefix + name
    raise KeyError(f"no field mapping {bc_field} / {dataverse_field}")


def add_field_row(data: dict, **values) -> None:
    """Append a new field mapping row to the submitted inline formset."""
    total_key = next(k for k in data if k.endswith("-TOTAL_FORMS"))
    prefix = total_key[: -len("TOTAL_FORMS")]
    index = int(data[total_key])
    row = {"position": "999", "direction": "bidirectional", "enabled": "on", "transformation": "[]", "value_map": "{}"}
    row.update({"match_priority": "0"})
    row.update(values)
    for name, value in row.items():
        if value is not None:
            data[f"{prefix}{index}-{name}"] = value
    data[total_key] = str(index + 1)


def add_template_row(data: dict, **values) -> None:
    """Append a row to the submitted "values for new records, by filter" inline formset."""
    total_key = next(k for k in data if k.endswith("-TOTAL_FORMS") and "template" in k)
    prefix = total_key[: -len("TOTAL_FORMS")]
    index = int(data[total_key])
    row = {"position": "10", "name": "", "target": "dataverse", "source_filter": "", "values": "{}"}
    row.update(values)
    for name, value in row.items():
        data[f"{prefix}{index}-{name}"] = value
    data[total_key] = str(index + 1)


# Headless Chromium (the session's `browser`, tests/conftest.py) against the real admin on the live server, which
# also serves the sandbox.
@pytest.fixture
def mapping_page(browser, live_server, admin_user, settings):
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False  # plain http on localhost
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.goto("/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")
    yield page
    context.close()


@pytest.fixture
def live_sandbox_connections(live_server, make_sandbox_connections):
    """Connections to the sandbox served by the live server, over a real socket."""
    return make_sandbox_connections(live_server.url)
