import pytest


@pytest.fixture
def sandbox_connections(sandbox_http, make_sandbox_connections):
    """As the shared fixture, with pages of 5 so that even a small seed takes several pages."""
    return make_sandbox_connections("http://testserver", page_size=5)
