"""Realistic demo data for both emulated services, generated with Faker from a seed.

Ids come from the seeded random generator, so seeding twice with the same arguments finds every row already
there and adds nothing. `shared` companies exist on both sides with the same name, phone and email.
"""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

from django.db import connections, transaction
from faker import Faker

from sandbox import odata, rows, schema
from sandbox.models import Company, Counter, row_model

DEMO_COMPANY_NAME = "CRONUS USA, Inc."
BULK = 2000
POOL = 1500  # beyond this many values of one kind, reuse Faker's output (keeps 100,000-row seeds fast)

CURRENCIES = [
    ("CAD", "Canadian dollar", "$", 1.36),
    ("EUR", "Euro", "€", 0.92),
    ("GBP", "British pound", "£", 0.79),
    ("MXN", "Mexican peso", "$", 17.1),
    ("AUD", "Australian dollar", "$", 1.52),
    ("JPY", "Japanese yen", "¥", 151.0),
]
PAYMENT_TERMS = [
    ("10 DAYS", "Net 10 days", "10D", "", 0),
    ("14 DAYS", "Net 14 days", "14D", "", 0),
    ("1M(8D)", "1 Month/2% 8 days", "1M", "8D", 2),
    ("30 DAYS", "Net 30 days", "30D", "", 0),
    ("60 DAYS", "Net 60 days", "60D", "", 0),
    ("COD", "Cash on delivery", "0D", "", 0),
    ("CM", "Current month", "CM", "", 0),
]
SHIPMENT_METHODS = [
    ("CIF", "Cost Insurance and Freight"),
    ("EXW", "Ex Warehouse"),
    ("FOB", "Free on Board"),
    ("PICKUP", "Pickup at Location"),
    ("DAP", "Delivered at Place"),
]
SALESPEOPLE = [
    ("JS", "Jennifer Smith", "Senior Sales Representative"),
    ("PS", "Peter Saddow", "Sales Manager"),
    ("OF", "Otis Falls", "Sales Representative"),
    ("LT", "Linda Martin", "Account Manager"),
    ("BD", "Bart Duncan", "Purchasing Agent"),
    ("HR", "Helen Ray", "Sales Representative"),
]


class _Generator:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.fake = Faker("en_US")
        self.fake.seed_instance(seed)
        self.now = rows.clock_now()
        self._pools: dict[str, list] = {}

    def pick(self, kind: str, make):
        pool = self._pools.setdefault(kind, [])
        if len(pool) < POOL:
            pool.append(make())
            return pool[-1]
        return self.rng.choice(pool)

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def stamp(self, seconds_only: bool = False) -> str:
        moment = self.now - timedelta(seconds=self.rng.randint(3600, 90 * 86400), milliseconds=self.rng.randint(0, 999))
        if seconds_only:
            moment = moment.replace(microsecond=0)
        return odata.iso_ms(moment)

    def phone(self) -> str:
        return f"+1 {self.rng.randint(201, 989)}-555-{self.rng.randint(0, 9999):04d}"

    def company(self) -> dict:
        name = self.pick("company", self.fake.company)
        domain = "".join(ch for ch in name.lower() if ch.isalnum())[:20] or "example"
        return {
            "name": name[:100],
            "street": self.pick("street", self.fake.street_address)[:50],
            "city": self.pick("city", self.fake.city)[:30],
            "state": self.pick("state", self.fake.state_abbr),
            "zip": self.pick("zip", self.fake.zipcode),
            "phone": self.phone(),
            "email": f"{self.first_name().lower()}@{domain}.com",
            "website": f"www.{domain}.com",
        }

    def first_name(self) -> str:
        return self.pick("first", self.fake.first_name)

    def last_name(self) -> str:
        return self.pick("last", self.fake.last_name)

    def job(self) -> str:
        return self.pick("job", self.fake.job)


def _bulk(model, new_rows: list[dict]) -> int:
    """Insert the rows that are not there yet (rows are keyed by their deterministic ids); returns how many were new.

    Plain `executemany` rather than model instances: seeding 100,000-row tables must take seconds, not minutes.
    """
    if not new_rows:
        return 0
    existing = set()
    ids = [r["rid"] for r in new_rows]
    for start in range(0, len(ids), 900):
        existing |= set(
            model.objects.using(rows.DB).filter(pk__in=ids[start : start + 900]).values_list("pk", flat=True)
        )
    new = [r for r in new_rows if r["rid"] not in existing]
    fields = model._meta.concrete_fields
    defaults = {f.attname: f.get_default() for f in fields}
    connection = connections[rows.DB]
    quote = connection.ops.quote_name
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
        f"VALUES ({', '.join(['%s'] * len(fields))})"
    )
    with transaction.atomic(using=rows.DB), connection.cursor() as cursor:
        for start in range(0, len(new), BULK):
            chunk = new[start : start + BULK]
            cursor.executemany(sql, [tuple(r.get(f.attname, defaults[f.attname]) for f in fields) for r in chunk])
    return len(new)


def _bc_row(table_name: str, gen: _Generator, company: str, **values):
    stamp = gen.stamp()
    return {
        "rid": gen.uuid(),
        "company": company,
        "created_at": stamp,
        "modified_at": stamp,
        "version": 1,
        "etag": rows.bc_etag(),
        **values,
    }


def _dv_row(table_name: str, gen: _Generator, version: int, actor: str | None, **values):
    stamp = gen.stamp(seconds_only=True)
    rid = values.pop("rid", None) or gen.uuid()
    return {
        "rid": rid,
        "created_at": stamp,
        "modified_at": stamp,
        "version": version,
        "created_by": actor,
        "modified_by": actor,
        **values,
    }


def reset() -> None:
    for model in [*(row_model(t) for t in schema.BC_TABLES + schema.DATAVERSE_TABLES), Company, Counter]:
        model.objects.using(rows.DB).all().delete()


def seed(
    *,
    company_id: str,
    customers: int,
    accounts: int,
    shared: int,
    seed: int,
    company_name: str = DEMO_COMPANY_NAME,
    same_customers: list[dict] | None = None,
    dataverse: bool = True,
) -> dict:
    """Seed one Business Central company and, with `accounts`, the Dataverse environment.

    A second company of the same environment passes `dataverse=False` (Dataverse is seeded once, with the first) and
    `same_customers`: customers of the first company it also has, with the same name, address, phone and email (as
    two companies of one group share customers), under numbers and ids of its own.
    """
    gen = _Generator(seed)
    counts = {}
    stamp = rows.now_ms()
    if not Company.objects.using(rows.DB).filter(rid=company_id).exists():
        Company.objects.using(rows.DB).create(
            rid=company_id, name=company_name[:30], display_name=company_name, modified_at=stamp
        )
    cid = company_id

    currencies = [
        _bc_row(
            "currencies",
            gen,
            cid,
            code=c,
            displayName=n,
            symbol=s,
            amountDecimalPlaces="2:2",
            amountRoundingPrecision=0.01,
        )
        for c, n, s, _ in CURRENCIES
    ]
    counts["bc_currencies"] = _bulk(row_model(schema.table("bc", "currencies")), currencies)
    terms = [
        _bc_row(
            "paymentTerms",
            gen,
            cid,
            code=c,
            displayName=n,
            dueDateCalculation=d,
            discountDateCalculation=dd,
            discountPercent=p,
        )
        for c, n, d, dd, p in PAYMENT_TERMS
    ]
    counts["bc_paymentTerms"] = _bulk(row_model(schema.table("bc", "paymentTerms")), terms)
    methods = [_bc_row("shipmentMethods", gen, cid, code=c, displayName=n) for c, n in SHIPMENT_METHODS]
    counts["bc_shipmentMethods"] = _bulk(row_model(schema.table("bc", "shipmentMethods")), methods)
    people = [
        _bc_row(
            "salespeoplePurchasers",
            gen,
            cid,
            code=code,
            displayName=name,
            jobTitle=title[:30],
            email=f"{name.split()[0].lower()}.{name.split()[1].lower()}@cronus-demo.com",
            phoneNo=gen.phone(),
            commisionPercent=float(gen.rng.choice([0, 2.5, 5, 7.5])),
        )
        for code, name, title in SALESPEOPLE
    ]
    counts["bc_salespeoplePurchasers"] = _bulk(row_model(schema.table("bc", "salespeoplePurchasers")), people)

    if not dataverse:
        companies = list(same_customers or []) + [gen.company() for _ in range(customers)]
        return _seed_bc_parties(gen, cid, customers, companies, terms, counts)
    # Dataverse reference data: currencies (USD is the base currency) and users (salespeople among them).
    version = rows.next_versions(len(CURRENCIES) + len(SALESPEOPLE) + 4 + accounts * 2 + 10)
    tx = [
        _dv_row(
            "transactioncurrencies",
            gen,
            version,
            None,
            isocurrencycode="USD",
            currencyname="US Dollar",
            currencysymbol="$",
            currencyprecision=2,
            exchangerate=1.0,
            currencytype=0,
            statecode=0,
            statuscode=1,
        )
    ]
    for code, name, symbol, rate in CURRENCIES:
        version += 1
        tx.append(
            _dv_row(
                "transactioncurrencies",
                gen,
                version,
                None,
                isocurrencycode=code,
                currencyname=name,
                currencysymbol=symbol,
                currencyprecision=2,
                exchangerate=rate,
                currencytype=1,
                statecode=0,
                statuscode=1,
            )
        )
    counts["dataverse_transactioncurrencies"] = _bulk(row_model(schema.table("dataverse", "transactioncurrencies")), tx)
    usd = tx[0]["rid"]
    users = []
    for _code, name, title in SALESPEOPLE:
        first, last = name.split()
        version += 1
        users.append(
            _dv_row(
                "systemusers",
                gen,
                version,
                None,
                firstname=first,
                lastname=last,
                fullname=name,
                internalemailaddress=f"{first.lower()}.{last.lower()}@cronus-demo.com",
                domainname=f"{first.lower()}.{last.lower()}@cronus-demo.com",
                jobtitle=title,
                islicensed=True,
                isdisabled=False,
                isintegrationuser=False,
                accessmode=0,
                azureactivedirectoryobjectid=gen.uuid(),
            )
        )
    counts["dataverse_systemusers"] = _bulk(row_model(schema.table("dataverse", "systemusers")), users)
    owners = [u["rid"] for u in users]

    # Companies: the first `shared` are on both sides with the same name, phone and email.
    companies = [gen.company() for _ in range(max(customers, accounts))]
    _seed_bc_parties(gen, cid, customers, companies, terms, counts)
    return _seed_dataverse_parties(gen, version, accounts, shared, companies, owners, usd, counts)


def _seed_bc_parties(gen, cid: str, customers: int, companies: list[dict], terms: list[dict], counts: dict) -> dict:
    """Customers, vendors and contacts of one Business Central company; the i-th customer is `companies[i]`."""
    customer_model = row_model(schema.table("bc", "customers"))
    first_no = Counter.objects.using(rows.DB).filter(name=f"bc:{cid}:customers").values_list("value", flat=True).first()
    customer_rows = []
    for i in range(customers):
        c = companies[i]
        customer_rows.append(
            _bc_row(
                "customers",
                gen,
                cid,
                number=f"C{10 * (i + 1):05d}",
                displayName=c["name"],
                type="Company",
                addressLine1=c["street"],
                city=c["city"],
                state=c["state"],
                country="US",
                postalCode=c["zip"],
                phoneNumber=c["phone"],
                email=c["email"],
                website=c["website"],
                salespersonCode=gen.rng.choice(SALESPEOPLE)[0],
                creditLimit=float(gen.rng.choice([0, 5000, 10000, 25000])),
                taxLiable=True,
                currencyCode="",
                currencyId=schema.ZERO_GUID,
                paymentTermsId=gen.rng.choice(terms)["rid"],
                blocked=gen.rng.choices([" ", "Ship", "Invoice", "All"], weights=[90, 4, 4, 2])[0],
            )
        )
    counts["bc_customers"] = _bulk(customer_model, customer_rows)
    if customers and (first_no or 0) < customers:
        Counter.objects.using(rows.DB).update_or_create(name=f"bc:{cid}:customers", defaults={"value": customers})

    vendors = max(1, customers // 5) if customers else 0
    vendor_rows = [
        _bc_row(
            "vendors",
            gen,
            cid,
            number=f"V{10 * (i + 1):05d}",
            displayName=(v := gen.company())["name"],
            addressLine1=v["street"],
            city=v["city"],
            state=v["state"],
            country="US",
            postalCode=v["zip"],
            phoneNumber=v["phone"],
            email=v["email"],
            website=v["website"],
            taxLiable=True,
            paymentTermsId=gen.rng.choice(terms)["rid"],
        )
        for i in range(vendors)
    ]
    counts["bc_vendors"] = _bulk(row_model(schema.table("bc", "vendors")), vendor_rows)
    if vendors:
        Counter.objects.using(rows.DB).update_or_create(name=f"bc:{cid}:vendors", defaults={"value": vendors})

    contact_rows = []
    n = 0
    for customer in customer_rows[: min(customers, 2000)]:
        n += 1
        company_no = f"CT{10 * n:06d}"
        contact_rows.append(
            _bc_row(
                "contacts",
                gen,
                cid,
                number=company_no,
                type="Company",
                displayName=customer["displayName"],
                companyNumber=company_no,
                companyName=customer["displayName"],
                contactBusinessRelation="Customer",
                addressLine1=customer["addressLine1"],
                city=customer["city"],
                state=customer["state"],
                country="US",
                postalCode=customer["postalCode"],
                phoneNumber=customer["phoneNumber"],
                email=customer["email"],
                searchName=customer["displayName"].upper(),
            )
        )
        n += 1
        person = f"{gen.first_name()} {gen.last_name()}"
        contact_rows.append(
            _bc_row(
                "contacts",
                gen,
                cid,
                number=f"CT{10 * n:06d}",
                type="Person",
                displayName=person[:100],
                jobTitle=gen.job()[:30],
                companyNumber=company_no,
                companyName=customer["displayName"],
                contactBusinessRelation="Customer",
                addressLine1=customer["addressLine1"],
                city=customer["city"],
                state=customer["state"],
                country="US",
                postalCode=customer["postalCode"],
                phoneNumber=gen.phone(),
                email=f"{person.split()[0].lower()}@{customer['email'].split('@')[1]}",
                searchName=person.upper()[:100],
            )
        )
    counts["bc_contacts"] = _bulk(row_model(schema.table("bc", "contacts")), contact_rows)
    if n:
        Counter.objects.using(rows.DB).update_or_create(name=f"bc:{cid}:contacts", defaults={"value": n})
    return counts


def _seed_dataverse_parties(
    gen, version: int, accounts: int, shared: int, companies: list[dict], owners: list[str], usd, counts: dict
) -> dict:
    """Accounts, each with a contact; the first `shared` are the first companies' customers."""

    account_rows, dv_contacts = [], []
    for i in range(accounts):
        c = companies[i] if i < shared else gen.company()
        version += 1
        vendor = i >= shared and gen.rng.random() < 0.1
        account = _dv_row(
            "accounts",
            gen,
            version,
            owners[i % len(owners)],
            name=c["name"][:160],
            telephone1=c["phone"],
            emailaddress1=c["email"],
            websiteurl=c["website"],
            address1_line1=c["street"],
            address1_city=c["city"],
            address1_stateorprovince=c["state"],
            address1_postalcode=c["zip"],
            address1_country="US",
            customertypecode=11 if vendor else 3,
            creditlimit=float(gen.rng.choice([0, 5000, 10000, 25000])),
            creditonhold=False,
            statecode=0,
            statuscode=1,
            ownerid=owners[i % len(owners)],
            transactioncurrencyid=usd,
        )
        account_rows.append(account)
        version += 1
        first, last = gen.first_name(), gen.last_name()
        dv_contacts.append(
            _dv_row(
                "contacts",
                gen,
                version,
                owners[i % len(owners)],
                firstname=first,
                lastname=last,
                fullname=f"{first} {last}",
                jobtitle=gen.job()[:100],
                emailaddress1=f"{first.lower()}@{c['email'].split('@')[1]}",
                telephone1=gen.phone(),
                address1_city=c["city"],
                parentcustomerid=account["rid"],
                parentcustomeridtype="account",
                accountid=account["rid"],
                statecode=0,
                statuscode=1,
                ownerid=owners[i % len(owners)],
                transactioncurrencyid=usd,
            )
        )
    counts["dataverse_accounts"] = _bulk(row_model(schema.table("dataverse", "accounts")), account_rows)
    counts["dataverse_contacts"] = _bulk(row_model(schema.table("dataverse", "contacts")), dv_contacts)
    return counts
