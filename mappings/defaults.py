"""The five default table mappings of Business Central's Dataverse integration, in the two APIs' own names.

Source: shared/docs/domain.md 2.1 and 2.2 (codeunit 7204 "CDS Setup Defaults") and the seed's table; API names
from protocols.md 1.18 (Dataverse) and 2.2 (Business Central API v2.0). Common to all five, as in BC:
synchronize only coupled records, no update- or deletion-conflict resolution.

Business Central fields that API v2.0 does not expose, so their default field mappings are left out:
- customers/vendors: Contact (-> address1_primarycontactname), Fax No. (-> fax), Shipping Agent Code
  (-> address1_shippingmethodcode), Primary Contact No. (-> primarycontactid); vendors: Purchaser Code (-> ownerid);
- contacts: Salesperson Code (-> ownerid), Currency Code, Fax No., First/Middle Name and Surname (only displayName is
  exposed: it goes to lastname, and comes back from the server-composed fullname), Pager;
- salespeoplePurchasers: everything maps except the code, which Dataverse has no column for.
`owneridtype` and `parentcustomeridtype` are read-only in the Web API (the owner's and parent's type travel in the
`@odata.bind` of ownerid / parentcustomerid), so the constant mappings BC writes to them are left out too. The
contact's parent account is not a field mapping in BC either: the engine derives it (domain.md 2.2, CONTACT).

An empty source value (field mapping option "empty source value keeps the target's", BC's Not Null): one-way fields
keep the target's value, since the source system may simply not hold it (a Dataverse user without a mobile phone
must not blank the salesperson's phone number in Business Central); bidirectional fields carry an empty value over
like any other, since clearing a value in one system is a change. (The credit limit is one-way too, but a number:
0 is a value, never an empty one.)

Payment terms and shipment method: the API exposes only their ids (paymentTermsId, shipmentMethodId), which differ
per company, so those mappings are created disabled with an empty value map; fill the map with your company's ids
(id -> Dataverse option value, e.g. NET30's id -> 1) and enable them.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from mappings.choices import Direction
from mappings.models import FieldMapping, TableMapping
from mappings.serialization import normalize_table_dict, save_table_dicts

BI = Direction.BIDIRECTIONAL.value
TO = Direction.TO_DATAVERSE.value
FROM = Direction.FROM_DATAVERSE.value


def _field(bc_field: str, dataverse_field: str, direction: str = BI, **options: Any) -> dict[str, Any]:
    return {"bc_field": bc_field, "dataverse_field": dataverse_field, "direction": direction, **options}


def _address_and_contact_fields() -> list[dict[str, Any]]:
    """Fields customers and vendors share (domain.md 2.2, CUSTOMER rows Name .. Phone No.)."""
    return [
        _field("displayName", "name"),
        _field("addressLine1", "address1_line1"),
        _field("addressLine2", "address1_line2"),
        _field("postalCode", "address1_postalcode"),
        _field("city", "address1_city"),
        _field("country", "address1_country"),
        _field("state", "address1_stateorprovince"),
        _field("currencyCode", "transactioncurrencyid", lookup_mapping="CURRENCY"),
        _field("email", "emailaddress1"),
        _field("website", "websiteurl"),
        _field("phoneNumber", "telephone1"),
    ]


def _disabled_option_field(bc_field: str, dataverse_field: str) -> dict[str, Any]:
    return _field(bc_field, dataverse_field, enabled=False, value_map={})


SALESPEOPLE = {
    "name": "SALESPEOPLE",
    "bc_entity_set": "salespeoplePurchasers",
    "dataverse_entity_set": "systemusers",
    "dataverse_primary_key": "systemuserid",
    "bc_name_field": "displayName",
    "dataverse_name_field": "fullname",
    "direction": FROM,
    "integration_table_filter": "isdisabled eq false and islicensed eq true and isintegrationuser eq false",
    "field_mappings": [
        # The e-mail identifies a user on both sides, so it is the match-based coupling criterion.
        _field("email", "internalemailaddress", FROM, use_for_matching=True, not_null=True),
        _field("displayName", "fullname", FROM, not_null=True),
        # Users often have no mobile phone in Dataverse: their empty value must not blank the salesperson's number.
        _field("phoneNo", "mobilephone", FROM, not_null=True),
    ],
}

CURRENCY = {
    "name": "CURRENCY",
    "bc_entity_set": "currencies",
    "dataverse_entity_set": "transactioncurrencies",
    "dataverse_primary_key": "transactioncurrencyid",
    "bc_name_field": "displayName",
    "dataverse_name_field": "currencyname",
    "direction": TO,
    "sync_after_match_coupling": True,
    "create_new_if_no_match": True,
    # Dataverse requires a precision and an exchange rate on create; BC fills the rate from its exchange rate
    # table, which API v2.0 does not expose, so new currencies start at 1 until someone sets the real rate.
    "dataverse_new_record_values": {"currencyprecision": 2, "exchangerate": 1},
    "field_mappings": [
        _field("code", "isocurrencycode", TO, use_for_matching=True, not_null=True),
        _field("symbol", "currencysymbol", TO, not_null=True),
        _field("displayName", "currencyname", TO, not_null=True),
    ],
}

CUSTOMER = {
    "name": "CUSTOMER",
    "bc_entity_set": "customers",
    "dataverse_entity_set": "accounts",
    "dataverse_primary_key": "accountid",
    "bc_name_field": "displayName",
    "dataverse_name_field": "name",
    "direction": BI,
    "table_filter": "blocked eq ' '",
    "integration_table_filter": "statecode eq 0 and customertypecode eq 3",
    "dependencies": ["CURRENCY", "SALESPEOPLE"],
    "dataverse_new_record_values": {"customertypecode": 3},
    "field_mappings": [
        _field("salespersonCode", "ownerid", TO, lookup_mapping="SALESPEOPLE", not_null=True),
        *_address_and_contact_fields(),
        _disabled_option_field("shipmentMethodId", "address1_freighttermscode"),
        _disabled_option_field("paymentTermsId", "paymenttermscode"),
        _field("creditLimit", "creditlimit", TO),
    ],
}

VENDOR = {
    "name": "VENDOR",
    "bc_entity_set": "vendors",
    "dataverse_entity_set": "accounts",
    "dataverse_primary_key": "accountid",
    "bc_name_field": "displayName",
    "dataverse_name_field": "name",
    "direction": BI,
    "table_filter": "blocked eq ' '",
    "integration_table_filter": "statecode eq 0 and customertypecode eq 11",
    "dependencies": ["CURRENCY", "SALESPEOPLE"],
    "dataverse_new_record_values": {"customertypecode": 11},
    "field_mappings": [
        *_address_and_contact_fields(),
        _disabled_option_field("paymentTermsId", "paymenttermscode"),
    ],
}

CONTACT = {
    "name": "CONTACT",
    "bc_entity_set": "contacts",
    "dataverse_entity_set": "contacts",
    "dataverse_primary_key": "contactid",
    "bc_name_field": "displayName",
    "dataverse_name_field": "fullname",
    "direction": BI,
    "table_filter": "type eq 'Person' and companyNumber ne ''",
    # Active contacts whose parent customer is an account (BC: parentcustomerid set, parentcustomeridtype account).
    "integration_table_filter": (
        "statecode eq 0 and _parentcustomerid_value ne null and parentcustomeridtype eq 'account'"
    ),
    "dependencies": ["CUSTOMER", "VENDOR"],
    "field_mappings": [
        _field("addressLine1", "address1_line1"),
        _field("addressLine2", "address1_line2"),
        _field("postalCode", "address1_postalcode"),
        _field("city", "address1_city"),
        _field("country", "address1_country"),
        _field("state", "address1_stateorprovince"),
        _field("email", "emailaddress1"),
        # API v2.0 has only displayName: it fills the required lastname, and the composed fullname comes back.
        _field("displayName", "lastname", TO, not_null=True),
        _field("displayName", "fullname", FROM, not_null=True),
        _field("website", "websiteurl"),
        _field("mobilePhoneNumber", "mobilephone"),
        _field("phoneNumber", "telephone1"),
        # Contacts created from Dataverse are persons (BC: constant "Person" written to Type).
        _field("type", "", FROM, constant_value="Person"),
    ],
}

# In BC's creation order (domain.md 2.1); dependencies make CURRENCY and SALESPEOPLE sync first anyway.
DEFAULT_MAPPINGS: list[dict[str, Any]] = [
    normalize_table_dict({**spec, "is_default": True}) for spec in (SALESPEOPLE, CUSTOMER, VENDOR, CONTACT, CURRENCY)
]
DEFAULT_NAMES = [spec["name"] for spec in DEFAULT_MAPPINGS]


def default_mapping(name: str) -> dict[str, Any]:
    """Return the default configuration of one mapping as plain data (see mappings.serialization)."""
    for spec in DEFAULT_MAPPINGS:
        if spec["name"] == name:
            return spec
    raise KeyError(f"{name} is not a default mapping; the defaults are {', '.join(DEFAULT_NAMES)}.")


def create_default_mappings(
    *, table_model: type[TableMapping] | None = None, field_model: type[FieldMapping] | None = None
) -> list[TableMapping]:
    """Create the default mappings that are missing, with their fields and dependencies; leave existing ones alone.

    Returns the five default mappings (new or existing), in DEFAULT_NAMES order. Idempotent.
    """
    table_model = table_model or TableMapping
    field_model = field_model or FieldMapping
    with transaction.atomic():
        existing = set(table_model.objects.filter(name__in=DEFAULT_NAMES).values_list("name", flat=True))
        missing = [spec for spec in DEFAULT_MAPPINGS if spec["name"] not in existing]
        save_table_dicts(missing, table_model=table_model, field_model=field_model)
        by_name = {tm.name: tm for tm in table_model.objects.filter(name__in=DEFAULT_NAMES)}
    return [by_name[name] for name in DEFAULT_NAMES]
