"""The sandbox's admin pages (faults, settings, changing a row "as another user") are for superusers only, whatever
permissions a user holds, and absent when the sandbox is off (SANDBOX_ENABLED=false)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.urls import reverse

from connectors.clients import open_client
from sandbox.models import Fault, Setting
from tests.permissions.conftest import csrf_client

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


def _customer_ids(connection) -> set[str]:
    with open_client(connection) as client:
        return {row["id"] for page in client.read_pages("customers") for row in page.rows}


def _delete_as_another_user(client, record_id):
    return client.post(
        reverse("admin:sandbox_out_of_band_edit"),
        {
            "csrfmiddlewaretoken": client.csrf_token,
            "table": "bc:customers",
            "record_id": record_id,
            "action": "delete",
            "values": "",
        },
    )


@pytest.mark.parametrize("kind", ["staff", "viewer", "runner", "editor"])
def test_only_a_superuser_may_change_a_sandbox_row_as_another_user(user_of, world, kind):
    bc, _dataverse = world["connections"]
    customer = world["bc_customer_id"]
    client = csrf_client(user_of(kind))  # the editor holds every permission of the sandbox's models

    assert client.get(reverse("admin:sandbox_out_of_band_edit")).status_code == 403
    assert _delete_as_another_user(client, customer).status_code == 403
    assert customer in _customer_ids(bc)


def test_a_superuser_changes_a_sandbox_row_as_another_user(user_of, world):
    bc, _dataverse = world["connections"]
    client = csrf_client(user_of("superuser"))

    assert _delete_as_another_user(client, world["bc_customer_id"]).status_code == 302
    assert world["bc_customer_id"] not in _customer_ids(bc)


def test_the_fault_and_settings_pages_are_for_superusers_only(user_of):
    editor = csrf_client(user_of("editor"))
    token = {"csrfmiddlewaretoken": editor.csrf_token}
    faults_before = Fault.objects.count()

    assert editor.get(reverse("admin:sandbox_fault_changelist")).status_code == 403
    assert (
        editor.post(reverse("admin:sandbox_fault_add"), {**token, "kind": "throttle", "remaining": 5}).status_code
        == 403
    )
    assert (
        editor.post(reverse("admin:sandbox_setting_add"), {**token, "key": "token_lifetime", "value": "1"}).status_code
        == 403
    )
    assert Fault.objects.count() == faults_before
    assert not Setting.objects.filter(key="token_lifetime", value=1).exists()
    index = editor.get(reverse("admin:index")).content.decode().lower()
    # The emulated tables are listed (read-only, with their view permission); faults and settings are not.
    assert "/admin/sandbox/fault/" not in index and "/admin/sandbox/setting/" not in index
    assert "/admin/sandbox/dvaccount/" in index

    superuser = csrf_client(user_of("superuser"))
    assert superuser.get(reverse("admin:sandbox_fault_changelist")).status_code == 200


ABSENT = """
import django
django.setup()
from django.contrib import admin
from django.urls import NoReverseMatch, Resolver404, resolve, reverse
from sandbox.models import Fault, Setting

assert Fault not in admin.site._registry and Setting not in admin.site._registry
for name in ("admin:sandbox_out_of_band_edit", "admin:sandbox_fault_changelist", "admin:sandbox_setting_changelist"):
    try:
        reverse(name)
    except NoReverseMatch:
        continue
    raise AssertionError(name + " is still there")
# Under /admin/ only the admin's catch-all answers it: a 404.
assert resolve("/admin/sandbox/fault/out-of-band-edit/").url_name is None
try:
    resolve("/sandbox/oauth/x/oauth2/v2.0/token")
except Resolver404:
    print("absent")
"""


def test_with_the_sandbox_off_its_pages_are_absent(tmp_path):
    env = {**os.environ, "SANDBOX_ENABLED": "false", "SYNCADMIN_DATA_DIR": str(tmp_path / "data")}
    env["DJANGO_SETTINGS_MODULE"] = "syncadmin.settings"

    result = subprocess.run(  # noqa: S603 (our own code)
        [sys.executable, "-c", ABSENT], env=env, capture_output=True, text=True, timeout=60, cwd=settings.BASE_DIR
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "absent"
