"""The server's clock, as the clients estimate it from the Date header of its answers.

The engine stops its watermark at the run's start on the source server's clock, so the estimate must never be
later than the server's real time: only then can a change made during a run never fall behind the watermark.
"""

from datetime import UTC, datetime, timedelta
from uuid import UUID

import httpx
import pytest

from connectors.clients import open_client
from connectors.errors import same_error
from connectors.odata import parse_datetime
from sandbox import rows as sandbox_rows
from sandbox import testing

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


@pytest.mark.parametrize("offset", [-45, 0, 20])
def test_the_estimate_of_the_servers_time_is_never_later_than_its_clock(bc_connection, sandbox, offset):
    sandbox_rows.set_setting("clock_offset_seconds", offset)
    with open_client(bc_connection) as client:
        assert client.server_time_at(datetime(2026, 1, 1, tzinfo=UTC)) == datetime(2026, 1, 1, tzinfo=UTC)
        (row,) = next(client.read_pages("customers", page_size=1)).rows
        moment = datetime.now(UTC)
        estimate = client.server_time_at(moment)

    # A record changed now is stamped by the server's clock: the estimate of "now" must not be after it.
    customer_id = UUID(row["id"])
    testing.edit_as_another_user("bc", "customers", customer_id, city="Stamped by the server")
    with open_client(bc_connection) as client:
        stamped = parse_datetime(client.read_by_ids("customers", [customer_id])[customer_id]["lastModifiedDateTime"])
    assert estimate <= stamped
    # ... and close to it: the Date header has whole seconds, and the answer took a moment to arrive.
    assert moment + timedelta(seconds=offset) - estimate < timedelta(seconds=2.5)


@pytest.mark.parametrize("date", [None, "", "not a date", "Tue, 01 Dec 2026 10:00:00"])
def test_an_answer_without_a_usable_date_changes_nothing(bc_connection, date):
    headers = {} if date is None else {"Date": date}
    with open_client(bc_connection) as client:
        client._note_server_clock(httpx.Response(200, headers=headers))
        moment = datetime.now(UTC)
        assert client.server_time_at(moment) == moment


def test_the_most_cautious_estimate_is_kept_when_servers_disagree(bc_connection):
    now = datetime.now(UTC)
    with open_client(bc_connection) as client:
        for skew in (-10, -40, -20):  # three servers behind a load balancer
            date = (now + timedelta(seconds=skew)).strftime("%a, %d %b %Y %H:%M:%S GMT")
            client._note_server_clock(httpx.Response(200, headers={"Date": date}))
        assert client.server_time_at(now) <= now - timedelta(seconds=40)


def test_business_centrals_correlation_id_does_not_make_the_same_error_look_new():
    first = "The length of the string is 34, but it must be less than or equal to 30 characters.  CorrelationId:  "
    assert same_error(first + "f91d215b-3d1e-449f-8adc-45f0b96a547f.", first + "810513cd-7045-41c8-bd18-34906a27b90b.")
    assert not same_error(
        "Field 'City' is too long.  CorrelationId:  f91d215b-3d1e-449f-8adc-45f0b96a547f.",
        "Field 'Name' is too long.  CorrelationId:  f91d215b-3d1e-449f-8adc-45f0b96a547f.",
    )
    assert same_error("Update conflict: city differs.", "Update conflict: city differs.")
    assert not same_error("Update conflict: city differs.", "")
