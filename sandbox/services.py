"""What the rest of the project (demo setup, tests) calls on the sandbox."""

from __future__ import annotations

import uuid

from django.db import transaction

from sandbox import auth, rows, schema
from sandbox import seed as seeding
from sandbox.models import AppClient, row_model

DEMO_TENANT = "5c1f9a3e-2b7d-4e8a-9f10-c70a05000001"
DEMO_ENVIRONMENT = "production"
DEMO_COMPANY_ID = uuid.UUID("70c0c603-f4f9-ef11-9344-6045bdc8c234")
# A second company of the same environment, sharing some customers with the first (as companies of one group do).
SECOND_COMPANY_ID = uuid.UUID("70c0c603-f4f9-ef11-9344-6045bdc8c235")
SECOND_COMPANY_NAME = "CRONUS Canada, Inc."


def demo_company_id() -> uuid.UUID:
    """The id of "CRONUS USA, Inc.", the company `seed_demo` creates."""
    return DEMO_COMPANY_ID


def register_client(*, client_id: str, client_secret: str) -> None:
    """Allow an app registration to get tokens; keeps only a hash of the secret. Idempotent.

    Like a real Dataverse environment, the app gets an application user (a systemuser) that owns what it creates.
    """
    with transaction.atomic(using=rows.DB):
        client = AppClient.objects.using(rows.DB).filter(client_id=client_id).first()
        if client is None:
            client = AppClient(client_id=client_id)
        if not client.secret_hash or not auth.check_secret(client_secret, client.secret_hash):
            client.secret_hash = auth.hash_secret(client_secret)
        users = row_model(schema.table("dataverse", "systemusers")).objects.using(rows.DB)
        if not client.systemuser_id or not users.filter(rid=client.systemuser_id).exists():
            user_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox-app-user:{client_id}"))
            if not users.filter(rid=user_id).exists():
                stamp = rows.later_than(None, seconds_only=True)
                users.create(
                    rid=user_id,
                    created_at=stamp,
                    modified_at=stamp,
                    version=rows.next_versions(),
                    firstname="#",
                    lastname=f"app {client_id}"[:256],
                    fullname=f"# app {client_id}"[:200],
                    internalemailaddress=f"app-{client_id}@sandbox.invalid"[:100],
                    domainname=f"app-{client_id}@sandbox.invalid",
                    applicationid=user_id,
                    accessmode=4,
                    isintegrationuser=False,
                    islicensed=False,
                )
            client.systemuser_id = user_id
        client.save(using=rows.DB)


def seed_demo(
    *, customers: int = 300, accounts: int = 250, shared: int = 60, seed: int = 1, reset: bool = False
) -> dict:
    """Fill both emulated services with realistic demo data; running it again adds nothing. Returns counts of
    rows added per table (`reset=True` empties the emulated tables first)."""
    shared = min(shared, customers, accounts)
    with transaction.atomic(using=rows.DB):
        if reset:
            seeding.reset()
        return seeding.seed(
            company_id=str(DEMO_COMPANY_ID), customers=customers, accounts=accounts, shared=shared, seed=seed
        )


def second_company_id() -> uuid.UUID:
    """The id of "CRONUS Canada, Inc.", the company `seed_second_company` creates."""
    return SECOND_COMPANY_ID


def seed_second_company(*, customers: int = 120, shared: int = 30, seed: int = 2) -> dict:
    """A second Business Central company in the environment `seed_demo` filled (run that first), whose first `shared`
    customers are the first company's first customers: same number, name, address, phone and email, ids of their own.
    Dataverse is not seeded again: both companies synchronize with the one environment. Running it again adds nothing.
    """
    customer_model = row_model(schema.table("bc", "customers")).objects.using(rows.DB)
    first = customer_model.filter(company=str(DEMO_COMPANY_ID)).order_by("number")[: min(shared, customers)]
    same = [
        {
            "name": c.displayName,
            "street": c.addressLine1,
            "city": c.city,
            "state": c.state,
            "zip": c.postalCode,
            "phone": c.phoneNumber,
            "email": c.email,
            "website": c.website,
        }
        for c in first
    ]
    with transaction.atomic(using=rows.DB):
        return seeding.seed(
            company_id=str(SECOND_COMPANY_ID),
            company_name=SECOND_COMPANY_NAME,
            customers=customers,
            accounts=0,
            shared=0,
            seed=seed,
            same_customers=same,
            dataverse=False,
        )
