"""The sandbox admin page: out-of-band edits and deletions as another user, behind login."""

import re

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


def _staff_with(*codenames):
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user(f"sandbox-viewer-{User.objects.count()}", password="x", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="sandbox", codename__in=codenames))
    return user


def test_the_emulated_tables_are_browsed_read_only_with_their_view_permission(client, bc, company_id):
    """A change made through Business Central's API shows in the admin's list of the emulated table (no API token
    needed to see what a sync did); nobody may add, change or delete there, and seeing a table needs its view
    permission."""
    from sandbox.models import ROW_MODELS

    model = ROW_MODELS[("bc", "customers")]
    opts = model._meta
    row = bc.get(f"companies({company_id})/customers", params={"$top": 1}).json()["value"][0]
    bc.patch(
        f"companies({company_id})/customers({row['id']})",
        json={"displayName": "Seen In The Admin"},
        headers={"If-Match": row["@odata.etag"]},
    )
    changelist = reverse(f"admin:sandbox_{opts.model_name}_changelist")
    change = reverse(f"admin:sandbox_{opts.model_name}_change", args=[row["id"]])

    client.force_login(_staff_with())
    assert client.get(changelist).status_code == 403
    client.force_login(_staff_with(f"view_{opts.model_name}", f"change_{opts.model_name}", "delete_" + opts.model_name))
    page = client.get(changelist, {"q": "Seen In"})
    assert page.status_code == 200 and "Business Central customers" in page.content.decode()
    assert "Seen In The Admin" in page.content.decode()
    detail = client.get(change).content.decode()
    assert "Seen In The Admin" in detail and 'name="_save"' not in detail
    # Read-only whatever the permissions held: no add, no change, no delete.
    assert client.get(reverse(f"admin:sandbox_{opts.model_name}_add")).status_code == 403
    assert client.post(change, {"displayName": "Changed"}).status_code == 403
    assert (
        client.post(reverse(f"admin:sandbox_{opts.model_name}_delete", args=[row["id"]]), {"post": "yes"}).status_code
        == 403
    )
    assert bc.get(f"companies({company_id})/customers({row['id']})").json()["displayName"] == "Seen In The Admin"


def test_a_fault_has_a_name_and_help(admin_client):
    from sandbox.models import Fault

    fault = Fault.objects.create(kind="503", service="bc", remaining=3)
    assert str(fault) == "503 Service Unavailable on business central, next 3 requests"
    form = admin_client.get(reverse("admin:sandbox_fault_add")).content.decode()
    assert "How many of the next requests fail this way" in form and "Dropped connection" in form
    assert (
        "503 Service Unavailable on business central"
        in admin_client.get(reverse("admin:sandbox_fault_changelist")).content.decode()
    )


def test_the_emulated_business_central_rows_say_and_filter_by_their_company(admin_client, company_id):
    """The demo's two companies hold look-alike customers (the second's first ones copy the first's): the list names
    each row's company and filters by it, under labels a person reads (Id, Display name), not raw column names."""
    from sandbox import services
    from sandbox.models import ROW_MODELS, Company

    services.seed_second_company(customers=4, shared=2)
    model = ROW_MODELS[("bc", "customers")]
    changelist = reverse(f"admin:sandbox_{model._meta.model_name}_changelist")
    first, second = (Company.objects.get(rid=company_id), Company.objects.get(rid=str(services.second_company_id())))

    response = admin_client.get(changelist, {"all": ""})
    page = response.content.decode()
    headers = re.findall(r'<th scope="col" class="[^"]*column-([^" ]+)[^"]*">.*?<(?:a|span)[^>]*>([^<]+)<', page, re.S)
    labels = [label.strip() for _, label in headers]
    assert labels[:3] == ["Id", "Display name", "Number"] and "Company" in labels, labels
    assert "DISPLAYNAME" not in page and ">displayName<" not in page
    assert first.display_name in page and second.display_name in page
    # Modified at as the admin's other times, not the wire's "2026-12-05T05:21:29.000Z".
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", page) and not re.search(r"\d\dT\d\d:\d\d:\d\d", page)

    shown = admin_client.get(changelist, {"company": second.rid}).context["cl"].result_list
    assert len(shown) == 4 and {row.company for row in shown} == {second.rid}
    assert {row.company_label for row in shown} == {second.display_name}
    filter_links = admin_client.get(changelist).content.decode()
    assert f"?company={second.rid}" in filter_links  # the list filter offers each company


def test_the_emulated_dataverse_rows_name_their_company_and_the_company_rows_their_name(admin_client, dv, seeded):
    from sandbox.models import ROW_MODELS

    created = dv.post("cdm_companies", json={"cdm_name": "CRONUS Canada", "bcbi_externalid": "x-1"})
    assert created.status_code == 204, created.text
    cdm_id = re.search(r"\(([0-9a-f-]{36})\)", created.headers["OData-EntityId"]).group(1)
    account = dv.get("accounts", params={"$top": 1, "$select": "accountid"}).json()["value"][0]["accountid"]
    stamped = dv.patch(f"accounts({account})", json={"bcbi_companyid@odata.bind": f"/cdm_companies({cdm_id})"})
    assert stamped.status_code == 204, stamped.text

    accounts = ROW_MODELS[("dataverse", "accounts")]._meta.model_name
    changelist = reverse(f"admin:sandbox_{accounts}_changelist")
    filtered = admin_client.get(changelist, {"company": cdm_id})
    assert [row.rid for row in filtered.context["cl"].result_list] == [account]
    page = filtered.content.decode()
    assert "CRONUS Canada" in page and ">Email<" in page and ">Id<" in page

    companies = ROW_MODELS[("dataverse", "cdm_companies")]._meta.model_name
    detail = admin_client.get(reverse(f"admin:sandbox_{companies}_change", args=[cdm_id])).content.decode()
    assert "<h2>CRONUS Canada</h2>" in detail and "DvCdmCompany object" not in detail
    assert "Business Central company id" in detail
