"""The sandbox admin page: out-of-band edits and deletions as another user, behind login."""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


def test_page_needs_login(client):
    response = client.get(reverse("admin:sandbox_out_of_band_edit"))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_edit_and_delete_as_another_user(admin_client, bc, company_id):
    row = bc.get(f"companies({company_id})/customers", params={"$top": 1}).json()["value"][0]
    url = reverse("admin:sandbox_out_of_band_edit")
    assert admin_client.get(url).status_code == 200
    response = admin_client.post(
        url,
        {"table": "bc:customers", "record_id": row["id"], "action": "edit", "values": '{"displayName": "From admin"}'},
    )
    assert response.status_code == 302
    changed = bc.get(f"companies({company_id})/customers({row['id']})").json()
    assert changed["displayName"] == "From admin" and changed["@odata.etag"] != row["@odata.etag"]
    invalid = admin_client.post(
        url, {"table": "bc:customers", "record_id": row["id"], "action": "edit", "values": "[]"}
    )
    assert invalid.status_code == 200 and "JSON object" in invalid.content.decode()
    too_long = admin_client.post(
        url,
        {"table": "bc:customers", "record_id": row["id"], "action": "edit", "values": '{"city": "' + "x" * 40 + '"}'},
    )
    assert "must be less than or equal to 30 characters" in too_long.content.decode()
    admin_client.post(url, {"table": "bc:customers", "record_id": row["id"], "action": "delete", "values": ""})
    assert bc.get(f"companies({company_id})/customers({row['id']})").status_code == 404


def test_fault_list_links_to_the_page(admin_client):
    response = admin_client.get(reverse("admin:sandbox_fault_changelist"))
    assert response.status_code == 200
    assert reverse("admin:sandbox_out_of_band_edit") in response.content.decode()
