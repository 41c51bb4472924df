"""override_transport: every client created meanwhile goes through the given transport, and only then."""

import httpx

from connectors.http import build_http_client, current_transport, override_transport


class ClosingCounter(httpx.MockTransport):
    def __init__(self):
        super().__init__(lambda request: httpx.Response(200, text=request.url.host))
        self.closed = 0

    def close(self):
        self.closed += 1


def test_clients_use_the_override_while_it_is_set_and_never_close_it():
    transport = ClosingCounter()
    with override_transport(transport):
        first = build_http_client(timeout_seconds=5)
        second = build_http_client(timeout_seconds=5)
        first.close()
        assert second.get("http://service.example/").text == "service.example"
        second.close()
    assert transport.closed == 0  # shared by every client: closing one must not break the others
    assert current_transport() is None


def test_the_plain_setter_form_sets_and_clears():
    transport = ClosingCounter()
    override_transport(transport)
    try:
        assert current_transport() is not None
        with build_http_client(timeout_seconds=5) as client:
            assert client.get("http://other.example/").text == "other.example"
    finally:
        override_transport(None)
    assert current_transport() is None
