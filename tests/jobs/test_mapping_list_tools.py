"""The tools above the table mapping list: each shown only to users who may use it, and the page a refusal shows."""

import re

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from mappings.models import TableMapping

pytestmark = pytest.mark.django_db

REVIEW = "Full synchronization review"
SYNC_ALL = "Synchronize all modified records"
EXPORT = "Export"
IMPORT = "Import"
RESET = "Use default synchronization settings"
ADD = "Add table mapping"

# The page each tool leads to, and how it is used (the sync-all tool is a form that posts).
TOOL_REQUESTS = {
    REVIEW: ("get", "admin:mappings_tablemapping_full_sync_review"),
    SYNC_ALL: ("post", "admin:mappings_tablemapping_sync_all"),
    EXPORT: ("get", "admin:mappings_tablemapping_export"),
    IMPORT: ("get", "admin:mappings_tablemapping_import"),
    RESET: ("get", "admin:mappings_tablemapping_reset"),
    ADD: ("get", "admin:mappings_tablemapping_add"),
}


def user_with(django_user_model, *permissions):
    user = django_user_model.objects.create_user("clerk", password="unused", is_staff=True)
    for permission in permissions:
        app_label, codename = permission.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user


def tools(client):
    """The labels of the tools above the list, in order."""
    response = client.get(reverse("admin:mappings_tablemapping_changelist"))
    assert response.status_code == 200
    html = response.content.decode()
    block = html.split('<ul class="object-tools">', 1)[1].split("</ul>", 1)[0]
    items = re.findall(r"<li>(.*?)</li>", block, re.S)
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", item)).strip() for item in items]


def actions(client):
    form = client.get(reverse("admin:mappings_tablemapping_changelist")).context["action_form"]
    return set() if form is None else {name for name, _ in form.fields["action"].choices}


@pytest.mark.parametrize(
    ("permissions", "shown"),
    [
        (["mappings.view_tablemapping"], [REVIEW, EXPORT]),
        (["mappings.view_tablemapping", "jobs.run_sync"], [REVIEW, SYNC_ALL, EXPORT]),
        (["mappings.change_tablemapping"], [REVIEW, EXPORT, RESET]),
        (["mappings.change_tablemapping", "mappings.add_tablemapping"], [REVIEW, EXPORT, IMPORT, RESET, ADD]),
        (
            ["mappings.change_tablemapping", "mappings.add_tablemapping", "jobs.run_sync"],
            [REVIEW, SYNC_ALL, EXPORT, IMPORT, RESET, ADD],
        ),
    ],
)
def test_each_tool_is_shown_only_to_users_who_may_use_it_and_the_hidden_ones_are_refused(
    client, django_user_model, django_capture_on_commit_callbacks, permissions, shown
):
    client.force_login(user_with(django_user_model, *permissions))

    assert tools(client) == shown
    for label, (method, url_name) in TOOL_REQUESTS.items():
        with django_capture_on_commit_callbacks(execute=True):
            response = getattr(client, method)(reverse(url_name))
        if label in shown:
            assert response.status_code in (200, 302), label
        else:
            assert response.status_code == 403, label


def test_the_reset_action_is_offered_only_to_users_who_may_change_mappings(client, django_user_model):
    user = user_with(django_user_model, "mappings.view_tablemapping")
    client.force_login(user)
    assert "reset_to_defaults" not in actions(client)
    mapping = TableMapping.objects.get(name="CURRENCY")
    response = client.post(
        reverse("admin:mappings_tablemapping_changelist"),
        {"action": "reset_to_defaults", "_selected_action": [mapping.pk]},
    )
    assert response.status_code == 200  # the list again, with "No action selected": nothing was reset

    user.user_permissions.add(Permission.objects.get(codename="change_tablemapping"))
    assert "reset_to_defaults" in actions(client)


def test_a_refusal_is_an_admin_page_that_says_the_permission_is_missing(client, django_user_model):
    client.force_login(user_with(django_user_model, "mappings.view_tablemapping"))

    response = client.post(reverse("admin:mappings_tablemapping_sync_all"))

    assert response.status_code == 403
    assert [template.name for template in response.templates][:1] == ["403.html"]
    html = response.content.decode()
    assert 'id="site-name"' in html and ">syncadmin<" in html  # the admin's header, not a bare page
    assert "<h1>Permission denied</h1>" in html
    assert "You do not have the permission this page or action needs, clerk." in html
    assert "Can run synchronizations and coupling jobs" in html
    assert f'href="{reverse("admin:index")}"' in html
    assert "Log out" in html
