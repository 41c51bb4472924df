import pytest


@pytest.fixture
def sandbox_connections(sandbox_http, make_sandbox_connections):
    """As the shared fixture, with pages of 5 so that even a small seed takes several pages."""
    return make_sandbox_connections("http://testserver", page_size=5)


@pytest.fixture
def customer(db):
    """CUSTOMER creating what is missing on both sides, without lookups (they have their own tests).

    Test modules that need CUSTOMER in another state define their own `customer`.
    """
    from mappings.models import TableMapping

    mapping = TableMapping.objects.get(name="CUSTOMER")
    mapping.field_mappings.filter(lookup_mapping__isnull=False).update(enabled=False)
    mapping.sync_only_coupled = False
    mapping.save()
    return mapping
