"""The emulated tables, described once as data.

One description per table drives the Django model (sandbox/models.py), validation on write, serialisation on read,
`$metadata` / `EntityDefinitions`, and the seed. Property names, types, lengths and enum strings follow
/work/shared/docs/protocols.md (§1.18 for Dataverse, §2.2 for Business Central).
"""

from __future__ import annotations

from dataclasses import dataclass, field

ZERO_GUID = "00000000-0000-0000-0000-000000000000"
BC_STANDARD_ROUTE = "v2.0"
# The custom API page the emulated extension publishes (APIPublisher contoso, APIGroup projects, APIVersion v1.0).
BC_CUSTOM_ROUTE = "contoso/projects/v1.0"
# The emulated Dataverse organization, as WhoAmI and webhook execution contexts name it.
ORGANIZATION_ID = "8d4b0b2e-5f1a-4c3e-9a77-2f0b5c1d9e01"
BUSINESS_UNIT_ID = "3f1c2a9b-7d4e-4b8a-a1c5-6e2d9f0b7a13"
LOCAL_CURRENCY = "USD"  # the demo company's LCY; a blank currency code means this one

# Columns every emulated row has, stored under one name whatever the service calls them.
SYSTEM_STORAGE = {
    "lastModifiedDateTime": "modified_at",
    "modifiedon": "modified_at",
    "createdon": "created_at",
    "versionnumber": "version",
    "createdby": "created_by",
    "modifiedby": "modified_by",
}


@dataclass(frozen=True)
class Column:
    """One property as the API shows it. `kind`:

    text (BC Text[n]), code (BC Code[n]: upper-cased), enum (BC enum string), string/memo (Dataverse),
    integer, decimal, money, boolean, datetime, date, guid, choice (Dataverse option set),
    lookup (Dataverse single-valued navigation, read as `_x_value`).
    """

    name: str
    kind: str
    max_length: int | None = None
    required: bool = False
    read_only: bool = False
    options: tuple = ()  # BC enum strings, or Dataverse (value, label) pairs
    targets: tuple[str, ...] = ()  # lookups: target entity sets
    not_for_create: bool = False  # Dataverse statecode / isdisabled
    minimum: float | None = None
    maximum: float | None = None
    label: str = ""
    code_table: str = ""  # BC: a Code field that must name a record of this entity set (by its `code`)

    @property
    def storage(self) -> str:
        """The model field holding the value (lookups store the target id under the logical name)."""
        return SYSTEM_STORAGE.get(self.name, self.name)

    @property
    def api_name(self) -> str:
        return f"_{self.name}_value" if self.kind == "lookup" else self.name


@dataclass(frozen=True)
class Table:
    service: str  # "bc" or "dataverse"
    entity_set: str
    logical_name: str  # Dataverse logical name / BC entity type name
    model_name: str
    primary_key: str  # "id" or e.g. "accountid"
    primary_name: str
    modified_on: str  # "lastModifiedDateTime" / "modifiedon"
    columns: tuple[Column, ...]
    caption: str = ""  # BC table caption used in error messages ("Customer")
    number_field: str = ""  # BC: the key field filled from a number series when omitted
    number_series: tuple[str, int] = ("", 0)  # (first number, increment)
    webhooks: bool = False  # BC: webhook-capable resource
    unique: tuple[str, ...] = ()  # fields unique per company (BC) or per table (Dataverse)
    object_type_code: int = 0
    # BC: the API route the entity set is published under: the standard `v2.0`, or an extension's API page at
    # `{publisher}/{group}/{version}` (developing a custom API, Microsoft Learn devenv-develop-custom-api).
    api_route: str = "v2.0"
    _by_name: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        self._by_name.update({c.api_name: c for c in self.columns})

    def storage(self, column: Column) -> str:
        """The model field behind a column: the primary key is always `rid`, system columns share names."""
        return "rid" if column.name == self.primary_key else column.storage

    @property
    def data_columns(self) -> tuple[Column, ...]:
        """Columns with their own model field (not the key, not the shared system columns)."""
        return tuple(c for c in self.columns if c.name != self.primary_key and c.name not in SYSTEM_STORAGE)

    def column(self, api_name: str) -> Column | None:
        return self._by_name.get(api_name)

    @property
    def entity_type(self) -> str:
        return (
            f"Microsoft.NAV.{self.logical_name}"
            if self.service == "bc"
            else f"Microsoft.Dynamics.CRM.{self.logical_name}"
        )


def _bc_address(with_country: bool = True) -> tuple[Column, ...]:
    cols = (
        Column("addressLine1", "text", 100),
        Column("addressLine2", "text", 50),
        Column("city", "text", 30),
        Column("state", "text", 30),
        Column("country", "code", 10),
        Column("postalCode", "code", 20),
    )
    return cols if with_country else cols[:4] + cols[5:]


BC_ID = Column("id", "guid", read_only=True)
BC_MODIFIED = Column("lastModifiedDateTime", "datetime", read_only=True)

BC_TABLES = (
    Table(
        "bc",
        "customers",
        "customer",
        "BcCustomer",
        "id",
        "displayName",
        "lastModifiedDateTime",
        (
            BC_ID,
            Column("number", "code", 20),
            Column("displayName", "text", 100, required=True),
            Column("type", "enum", options=("Company", "Person")),
            *_bc_address(),
            Column("phoneNumber", "phone", 30),
            Column("email", "text", 80),
            Column("website", "text", 80),
            Column("salespersonCode", "code", 20),
            Column("balanceDue", "decimal", read_only=True),
            Column("creditLimit", "decimal"),
            Column("taxLiable", "boolean"),
            Column("taxAreaId", "guid"),
            Column("taxAreaDisplayName", "text", 100, read_only=True),
            Column("taxRegistrationNumber", "text", 20),
            Column("currencyId", "guid"),
            Column("currencyCode", "code", 10),
            Column("paymentTermsId", "guid"),
            Column("shipmentMethodId", "guid"),
            Column("paymentMethodId", "guid"),
            Column("blocked", "enum", options=(" ", "Ship", "Invoice", "All")),
            BC_MODIFIED,
        ),
        caption="Customer",
        number_field="number",
        number_series=("C00010", 10),
        webhooks=True,
        unique=("number",),
    ),
    Table(
        "bc",
        "vendors",
        "vendor",
        "BcVendor",
        "id",
        "displayName",
        "lastModifiedDateTime",
        (
            BC_ID,
            Column("number", "code", 20),
            Column("displayName", "text", 100, required=True),
            *_bc_address(),
            Column("phoneNumber", "phone", 30),
            Column("email", "text", 80),
            Column("website", "text", 80),
            Column("taxRegistrationNumber", "text", 20),
            Column("currencyId", "guid"),
            Column("currencyCode", "code", 10),
            Column("irs1099Code", "code", 10),
            Column("paymentTermsId", "guid"),
            Column("paymentMethodId", "guid"),
            Column("taxLiable", "boolean"),
            Column("blocked", "enum", options=(" ", "Payment", "All")),
            Column("balance", "decimal", read_only=True),
            BC_MODIFIED,
        ),
        caption="Vendor",
        number_field="number",
        number_series=("V00010", 10),
        webhooks=True,
        unique=("number",),
    ),
    Table(
        "bc",
        "contacts",
        "contact",
        "BcContact",
        "id",
        "displayName",
        "lastModifiedDateTime",
        (
            BC_ID,
            Column("number", "code", 20),
            Column("type", "enum", options=("Company", "Person")),
            Column("displayName", "text", 100, required=True),
            Column("jobTitle", "text", 30),
            Column("companyNumber", "code", 20),
            Column("companyName", "text", 100, read_only=True),
            Column(
                "contactBusinessRelation",
                "enum",
                read_only=True,
                options=(" ", "Customer", "Vendor", "Bank Account", "Employee", "Multiple"),
            ),
            *_bc_address(),
            Column("phoneNumber", "phone", 30),
            Column("mobilePhoneNumber", "phone", 30),
            Column("email", "text", 80),
            Column("website", "text", 80),
            Column("searchName", "code", 100, read_only=True),
            Column("privacyBlocked", "boolean"),
            Column("taxRegistrationNumber", "text", 20),
            Column("lastInteractionDate", "date", read_only=True),
            BC_MODIFIED,
        ),
        caption="Contact",
        number_field="number",
        number_series=("CT000010", 10),
        unique=("number",),
    ),
    Table(
        "bc",
        "currencies",
        "currency",
        "BcCurrency",
        "id",
        "displayName",
        "lastModifiedDateTime",
        (
            BC_ID,
            Column("code", "code", 10, required=True),
            Column("displayName", "text", 30),
            Column("symbol", "text", 10),
            Column("amountDecimalPlaces", "text", 5),
            Column("amountRoundingPrecision", "decimal"),
            BC_MODIFIED,
        ),
        caption="Currency",
        webhooks=True,
        unique=("code",),
    ),
    Table(
        "bc",
        "salespeoplePurchasers",
        "salespersonPurchaser",
        "BcSalesperson",
        "id",
        "displayName",
        "lastModifiedDateTime",
        (
            BC_ID,
            Column("code", "code", 20, required=True),
            Column("displayName", "text", 50),
            Column("email", "text", 80),
            Column("email2", "text", 80),
            Column("phoneNo", "phone", 30),
            Column("jobTitle", "text", 30),
            Column("commisionPercent", "decimal", minimum=0, maximum=100),
            Column("privacyBlocked", "boolean"),
            Column("blocked", "boolean"),
            BC_MODIFIED,
        ),
        caption="Salesperson/Purchaser",
        unique=("code",),
    ),
    Table(
        "bc",
        "paymentTerms",
        "paymentTerm",
        "BcPaymentTerm",
        "id",
        "displayName",
        "lastModifiedDateTime",
        (
            BC_ID,
            Column("code", "code", 10, required=True),
            Column("displayName", "text", 100),
            Column("dueDateCalculation", "text", 32),
            Column("discountDateCalculation", "text", 32),
            Column("discountPercent", "decimal", minimum=0, maximum=100),
            Column("calculateDiscountOnCreditMemos", "boolean"),
            BC_MODIFIED,
        ),
        caption="Payment Terms",
        webhooks=True,
        unique=("code",),
    ),
    Table(
        "bc",
        "shipmentMethods",
        "shipmentMethod",
        "BcShipmentMethod",
        "id",
        "displayName",
        "lastModifiedDateTime",
        (BC_ID, Column("code", "code", 10, required=True), Column("displayName", "text", 50), BC_MODIFIED),
        caption="Shipment Method",
        webhooks=True,
        unique=("code",),
    ),
    Table(
        "bc",
        "items",
        "item",
        "BcItem",
        "id",
        "displayName",
        "lastModifiedDateTime",
        (
            BC_ID,
            Column("number", "code", 20),
            Column("displayName", "text", 100, required=True),
            Column("displayName2", "text", 50),
            Column("type", "enum", options=("Inventory", "Service", "Non-Inventory")),
            Column("itemCategoryCode", "code", 20),
            Column("blocked", "boolean"),
            Column("gtin", "code", 14),
            Column("inventory", "decimal", read_only=True),
            Column("unitPrice", "decimal", minimum=0),
            Column("priceIncludesTax", "boolean"),
            Column("unitCost", "decimal", minimum=0),
            Column("baseUnitOfMeasureCode", "code", 10),
            BC_MODIFIED,
        ),
        caption="Item",
        number_field="number",
        number_series=("1000", 10),
        webhooks=True,
        unique=("number",),
    ),
    # A custom API page published by an extension: its own route, its own `$metadata` and `$batch`.
    Table(
        "bc",
        "projects",
        "project",
        "BcProject",
        "id",
        "description",
        "lastModifiedDateTime",
        (
            BC_ID,
            Column("number", "code", 20),
            Column("description", "text", 100, required=True),
            Column("customerNumber", "code", 20),
            Column("status", "enum", options=("Planning", "Open", "On Hold", "Completed")),
            Column("projectTypeCode", "code", 10, code_table="projectTypes"),
            Column("budgetAmount", "decimal", minimum=0),
            BC_MODIFIED,
        ),
        caption="Project",
        number_field="number",
        number_series=("PRJ00010", 10),
        webhooks=True,
        unique=("number",),
        api_route=BC_CUSTOM_ROUTE,
    ),
    # The extension's code table of project types, as Payment Terms or Shipment Methods are for customers.
    Table(
        "bc",
        "projectTypes",
        "projectType",
        "BcProjectType",
        "id",
        "description",
        "lastModifiedDateTime",
        (BC_ID, Column("code", "code", 10, required=True), Column("description", "text", 50), BC_MODIFIED),
        caption="Project Type",
        unique=("code",),
        api_route=BC_CUSTOM_ROUTE,
    ),
)


def _choice(name, options, label="", **kw) -> Column:
    return Column(name, "choice", options=tuple(options), label=label, **kw)


STATECODE = _choice("statecode", [(0, "Active"), (1, "Inactive")], "Status", not_for_create=True)
STATUSCODE = _choice("statuscode", [(1, "Active"), (2, "Inactive")], "Status Reason")
FREIGHT = _choice("address1_freighttermscode", [(1, "FOB"), (2, "No Charge")], "Address 1: Freight Terms")
PAYMENT_TERMS = _choice("paymenttermscode", [(1, "Net 30"), (2, "2% 10, Net 30"), (3, "Net 45"), (4, "Net 60")])
CONTACT_METHOD = _choice(
    "preferredcontactmethodcode", [(1, "Any"), (2, "Email"), (3, "Phone"), (4, "Fax"), (5, "Mail")]
)
DV_SYSTEM = (
    Column("createdon", "datetime", read_only=True),
    Column("modifiedon", "datetime", read_only=True),
    Column("versionnumber", "integer", read_only=True),
    Column("createdby", "lookup", read_only=True, targets=("systemusers",)),
    Column("modifiedby", "lookup", read_only=True, targets=("systemusers",)),
)
DV_OWNED = (Column("ownerid", "lookup", targets=("systemusers",)),)


def _dv_address(prefix="address1") -> tuple[Column, ...]:
    return (
        Column(f"{prefix}_line1", "string", 250),
        Column(f"{prefix}_line2", "string", 250),
        Column(f"{prefix}_line3", "string", 250),
        Column(f"{prefix}_city", "string", 80),
        Column(f"{prefix}_stateorprovince", "string", 50),
        Column(f"{prefix}_county", "string", 50),
        Column(f"{prefix}_postalcode", "string", 20),
        Column(f"{prefix}_country", "string", 80),
    )


MONEY = {"minimum": 0, "maximum": 100_000_000_000_000}
# The Business Central company a row belongs to (domain.md 3.10): Business Central's base integration solution adds
# this lookup to accounts and contacts, pointing at the Common Data Model's company table (cdm_company).
BCBI_COMPANY = Column("bcbi_companyid", "lookup", targets=("cdm_companies",), label="Company")

DATAVERSE_TABLES = (
    Table(
        "dataverse",
        "accounts",
        "account",
        "DvAccount",
        "accountid",
        "name",
        "modifiedon",
        (
            Column("accountid", "guid"),
            Column("name", "string", 160, required=True),
            Column("accountnumber", "string", 20),
            Column("telephone1", "string", 50),
            Column("telephone2", "string", 50),
            Column("telephone3", "string", 50),
            Column("fax", "string", 50),
            Column("emailaddress1", "string", 100),
            Column("emailaddress2", "string", 100),
            Column("emailaddress3", "string", 100),
            Column("websiteurl", "string", 200),
            Column("description", "memo", 2000),
            *_dv_address(),
            Column("address1_name", "string", 200),
            Column("address1_telephone1", "string", 50),
            FREIGHT,
            _choice(
                "address1_shippingmethodcode",
                [
                    (1, "Airborne"),
                    (2, "DHL"),
                    (3, "FedEx"),
                    (4, "UPS"),
                    (5, "Postal Mail"),
                    (6, "Full Load"),
                    (7, "Will Call"),
                ],
            ),
            _choice("address1_addresstypecode", [(1, "Bill To"), (2, "Ship To"), (3, "Primary"), (4, "Other")]),
            _choice(
                "customertypecode",
                [
                    (1, "Competitor"),
                    (2, "Consultant"),
                    (3, "Customer"),
                    (4, "Investor"),
                    (5, "Partner"),
                    (6, "Influencer"),
                    (7, "Press"),
                    (8, "Prospect"),
                    (9, "Reseller"),
                    (10, "Supplier"),
                    (11, "Vendor"),
                    (12, "Other"),
                ],
                "Relationship Type",
            ),
            PAYMENT_TERMS,
            CONTACT_METHOD,
            _choice("accountcategorycode", [(1, "Preferred Customer"), (2, "Standard")]),
            Column("creditlimit", "money", **MONEY),
            Column("revenue", "money", **MONEY),
            Column("creditonhold", "boolean"),
            Column("numberofemployees", "integer", minimum=0, maximum=1_000_000_000),
            STATECODE,
            STATUSCODE,
            Column("parentaccountid", "lookup", targets=("accounts",)),
            Column("primarycontactid", "lookup", targets=("contacts",)),
            Column("transactioncurrencyid", "lookup", targets=("transactioncurrencies",)),
            BCBI_COMPANY,
            *DV_OWNED,
            *DV_SYSTEM,
        ),
        object_type_code=1,
    ),
    Table(
        "dataverse",
        "contacts",
        "contact",
        "DvContact",
        "contactid",
        "fullname",
        "modifiedon",
        (
            Column("contactid", "guid"),
            Column("firstname", "string", 50),
            Column("middlename", "string", 50),
            Column("lastname", "string", 50, required=True),
            Column("fullname", "string", 160, read_only=True),
            Column("jobtitle", "string", 100),
            Column("emailaddress1", "string", 100),
            Column("emailaddress2", "string", 100),
            Column("emailaddress3", "string", 100),
            Column("telephone1", "string", 50),
            Column("telephone2", "string", 50),
            Column("telephone3", "string", 50),
            Column("mobilephone", "string", 50),
            Column("fax", "string", 50),
            Column("websiteurl", "string", 200),
            Column("salutation", "string", 100),
            *_dv_address(),
            FREIGHT,
            _choice("customertypecode", [(1, "Default Value")], "Relationship Type"),
            PAYMENT_TERMS,
            CONTACT_METHOD,
            _choice("accountrolecode", [(1, "Decision Maker"), (2, "Employee"), (3, "Influencer")], "Role"),
            Column("parentcustomerid", "lookup", targets=("accounts", "contacts")),
            Column("parentcustomeridtype", "string", 64, read_only=True),
            Column("accountid", "lookup", read_only=True, targets=("accounts",)),
            STATECODE,
            STATUSCODE,
            Column("transactioncurrencyid", "lookup", targets=("transactioncurrencies",)),
            BCBI_COMPANY,
            *DV_OWNED,
            *DV_SYSTEM,
        ),
        object_type_code=2,
    ),
    Table(
        "dataverse",
        "systemusers",
        "systemuser",
        "DvSystemUser",
        "systemuserid",
        "fullname",
        "modifiedon",
        (
            Column("systemuserid", "guid"),
            Column("fullname", "string", 200, read_only=True),
            Column("firstname", "string", 256),
            Column("lastname", "string", 256, required=True),
            Column("internalemailaddress", "string", 100, required=True),
            Column("domainname", "string", 1024, required=True),
            Column("jobtitle", "string", 100),
            Column("title", "string", 128),
            Column("mobilephone", "string", 64),
            Column("isdisabled", "boolean", not_for_create=True),
            Column("islicensed", "boolean"),
            Column("isintegrationuser", "boolean"),
            _choice(
                "accessmode",
                [
                    (0, "Read-Write"),
                    (1, "Administrative"),
                    (2, "Read"),
                    (3, "Support User"),
                    (4, "Non-interactive"),
                    (5, "Delegated Admin"),
                ],
                "Access Mode",
            ),
            Column("azureactivedirectoryobjectid", "guid"),
            Column("applicationid", "guid"),
            *DV_SYSTEM,
        ),
        object_type_code=8,
    ),
    Table(
        "dataverse",
        "transactioncurrencies",
        "transactioncurrency",
        "DvTransactionCurrency",
        "transactioncurrencyid",
        "currencyname",
        "modifiedon",
        (
            Column("transactioncurrencyid", "guid"),
            Column("isocurrencycode", "string", 5, required=True),
            Column("currencyname", "string", 100, required=True),
            Column("currencysymbol", "string", 10, required=True),
            Column("currencyprecision", "integer", required=True, minimum=0, maximum=10),
            Column("exchangerate", "decimal", required=True, minimum=1e-12, maximum=1e11),
            _choice("currencytype", [(0, "System"), (1, "Custom")], "Currency Type"),
            STATECODE,
            STATUSCODE,
            *DV_SYSTEM,
        ),
        unique=("isocurrencycode",),
        object_type_code=9105,
    ),
    # The company table of Business Central's integration solution: one row per Business Central company, found by
    # the company's id in bcbi_externalid (Business Central creates it when a company connects).
    Table(
        "dataverse",
        "cdm_companies",
        "cdm_company",
        "DvCdmCompany",
        "cdm_companyid",
        "cdm_name",
        "modifiedon",
        (
            Column("cdm_companyid", "guid"),
            Column("cdm_name", "string", 100, required=True),
            Column("cdm_companycode", "string", 10),
            Column("bcbi_externalid", "string", 100),
            STATECODE,
            STATUSCODE,
            *DV_SYSTEM,
        ),
        # Custom tables number from 10000 (Dataverse's first custom entity type code).
        object_type_code=10002,
    ),
    Table(
        "dataverse",
        "products",
        "product",
        "DvProduct",
        "productid",
        "name",
        "modifiedon",
        (
            Column("productid", "guid"),
            Column("name", "string", 100, required=True),
            Column("productnumber", "string", 100, required=True),
            Column("description", "memo", 2000),
            Column("price", "money", **MONEY),
            Column("standardcost", "money", **MONEY),
            _choice(
                "producttypecode",
                [(1, "Sales Inventory"), (2, "Miscellaneous Charges"), (3, "Services"), (4, "Flat Fees")],
                "Product Type",
            ),
            Column("quantitydecimal", "integer", minimum=0, maximum=5),
            _choice("productstructure", [(1, "Product"), (2, "Product Family"), (3, "Product Bundle")], "Structure"),
            STATECODE,
            STATUSCODE,
            Column("transactioncurrencyid", "lookup", targets=("transactioncurrencies",)),
            *DV_SYSTEM,
        ),
        object_type_code=1024,
    ),
    # A custom table of the emulated solution (publisher prefix cr123_), with a custom lookup to accounts.
    Table(
        "dataverse",
        "cr123_projects",
        "cr123_project",
        "DvCr123Project",
        "cr123_projectid",
        "cr123_name",
        "modifiedon",
        (
            Column("cr123_projectid", "guid"),
            Column("cr123_name", "string", 100, required=True),
            Column("cr123_number", "string", 20),
            Column("cr123_description", "memo", 2000),
            _choice(
                "cr123_status",
                [(100000000, "Planning"), (100000001, "Open"), (100000002, "Completed")],
                "Project Status",
            ),
            Column("cr123_budget", "money", **MONEY),
            _choice("cr123_projecttype", [(100000000, "Fit-out")], "Project Type"),
            Column("cr123_accountid", "lookup", targets=("accounts",), label="Customer Account"),
            STATECODE,
            STATUSCODE,
            *DV_OWNED,
            *DV_SYSTEM,
        ),
        unique=("cr123_number",),
        object_type_code=10001,
    ),
)

TABLES = {("bc", t.entity_set): t for t in BC_TABLES} | {("dataverse", t.entity_set): t for t in DATAVERSE_TABLES}
DATAVERSE_BY_LOGICAL = {t.logical_name: t for t in DATAVERSE_TABLES}


def table(service: str, entity_set: str) -> Table | None:
    return TABLES.get((service, entity_set))
