"""A company's mappings stay within it, and its company column is Business Central's: submitted through the admin's
change form (Django test client, logged in); each refusal says why, and nothing is saved."""

import re

import pytest
from django.urls import reverse

from connectors.choices import ConnectionKind
from connectors.models import Connection
from mappings.defaults import create_default_mappings
from mappings.models import FieldMapping, TableMapping
from mappings.services import configuration_snapshot
from tests.mappings.conftest import _bound_values, field_key

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


@pytest.fixture
def canada(db):
    """A second company with its own defaults; the existing mappings stay the first's (no company)."""
    company = Connection.objects.create(
        kind=ConnectionKind.BUSINESS_CENTRAL,
        name="CRONUS Canada",
        environment_url="https://api.businesscentral.dynamics.com",
        tenant="contoso.onmicrosoft.com",
        client_id="app",
        enabled=False,  # it need not be reachable: these checks are about configuration
    )
    create_default_mappings(company=company)
    return company


def _form_data(client, mapping):
    url = reverse("admin:mappings_tablemapping_change", args=[mapping.pk])
    response = client.get(url)
    data = _bound_values(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:  # field mappings, then templates for new records
        formset = inline.formset
        data.update(_bound_values(formset.management_form))
        data[formset.management_form.add_prefix("TOTAL_FORMS")] = str(formset.initial_form_count())
        for form in formset.forms[: formset.initial_form_count()]:
            data.update(_bound_values(form))
    return url, data


def _refused(client, url, data, message):
    before = {c.pk: configuration_snapshot(c) for c in Connection.objects.filter(kind=ConnectionKind.BUSINESS_CENTRAL)}
    response = client.post(url, data)
    page = response.content.decode()
    assert response.status_code == 200, "the form should come back with errors, not redirect"
    assert message in page, re.findall(r"errorlist[^>]*>(.*?)</ul>", page, re.S)
    after = {c.pk: configuration_snapshot(c) for c in Connection.objects.filter(kind=ConnectionKind.BUSINESS_CENTRAL)}
    assert after == before


def test_a_mapping_depends_only_on_mappings_of_its_company(admin_client, canada):
    customer = TableMapping.objects.get(company=canada, name="CUSTOMER")
    usa_currency = TableMapping.objects.get(company__isnull=True, name="CURRENCY")
    url, data = _form_data(admin_client, customer)
    data["dependencies"] = [*data["dependencies"], str(usa_currency.pk)]
    _refused(admin_client, url, data, "CURRENCY: a mapping depends only on mappings of its own company (CRONUS Canada")


def test_a_lookup_goes_through_a_mapping_of_its_company(admin_client, canada):
    customer = TableMapping.objects.get(company=canada, name="CUSTOMER")
    usa_currency = TableMapping.objects.get(company__isnull=True, name="CURRENCY")
    url, data = _form_data(admin_client, customer)
    data[field_key(data, "currencyCode", "transactioncurrencyid", "lookup_mapping")] = str(usa_currency.pk)
    _refused(admin_client, url, data, "CURRENCY is another company&#x27;s mapping")
    assert FieldMapping.objects.filter(table_mapping=customer, lookup_mapping__company=canada).exists()


def test_the_company_column_is_a_lookup_to_the_company_table(admin_client, sandbox_connections):
    """Business Central's integration solution adds bcbi_companyid, a lookup to cdm_company, to accounts and contacts
    (https://learn.microsoft.com/en-us/dynamics365/business-central/admin-synchronizing-business-central-and-sales)."""
    customer = TableMapping.objects.get(name="CUSTOMER")
    url, data = _form_data(admin_client, customer)
    data["dataverse_company_field"] = "name"
    _refused(admin_client, url, data, "name is a string, not a lookup to the company table cdm_companies")
    data["dataverse_company_field"] = "bcbi_company"
    _refused(admin_client, url, data, "Dataverse table accounts has no field &#x27;bcbi_company&#x27;")
    data["dataverse_company_field"] = "bcbi_companyid"
    response = admin_client.post(url, data)
    assert response.status_code == 302, re.findall(r"errorlist[^>]*>(.*?)</ul>", response.content.decode(), re.S)


def test_with_several_companies_a_mapping_names_its_company(admin_client, canada):
    canada.enabled = True
    canada.save()
    Connection.objects.create(
        kind=ConnectionKind.BUSINESS_CENTRAL,
        name="CRONUS USA",
        environment_url="https://api.businesscentral.dynamics.com",
        tenant="contoso.onmicrosoft.com",
        client_id="app",
    )
    customer = TableMapping.objects.get(company__isnull=True, name="CUSTOMER")
    url, data = _form_data(admin_client, customer)
    _refused(admin_client, url, data, "Several Business Central companies are enabled: choose this mapping&#x27;s.")
