"""One client shared by several threads: in-flight requests stay within the connection's concurrency, which halves
after a 429 and grows back after a run of successes; the batch size halves after a timeout only."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from connectors import resilience
from connectors.auth import clear_token_cache
from connectors.choices import ConnectionKind
from connectors.clients import open_client
from connectors.http import override_transport
from connectors.models import Connection
from connectors.resilience import Throttle


class Service:
    """Answers slowly, counts requests in flight, and throttles one request once `throttle_after` have been served."""

    def __init__(self, throttle_after: int):
        self.lock = threading.Lock()
        self.in_flight = 0
        self.peaks: list[int] = []  # in-flight count seen by each request, in arrival order
        self.served = 0
        self.throttle_after = throttle_after

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"token_type": "Bearer", "expires_in": 3599, "access_token": "t"})
        with self.lock:
            self.in_flight += 1
            self.peaks.append(self.in_flight)
            self.served += 1
            throttle = self.served == self.throttle_after
        time.sleep(0.02)
        with self.lock:
            self.in_flight -= 1
        if throttle:
            return httpx.Response(429, headers={"Retry-After": "0"}, json={"error": {"code": "0x80072322"}})
        return httpx.Response(200, json={"value": [{"accountid": "78914942-34cb-ed11-b596-0022481d68cd"}]})


def test_threads_sharing_a_client_stay_within_the_concurrency_that_backs_off_under_throttling(monkeypatch):
    monkeypatch.setattr(resilience, "sleep", lambda seconds: None)
    clear_token_cache()
    service = Service(throttle_after=12)
    connection = Connection(
        kind=ConnectionKind.DATAVERSE,
        name="DV",
        environment_url="https://org.crm.dynamics.com",
        tenant="t",
        client_id="c",
        max_concurrency=4,
    )
    connection.set_client_secret("secret")
    with override_transport(httpx.MockTransport(service)), open_client(connection) as client:
        client.tokens.token()
        with ThreadPoolExecutor(max_workers=8) as pool:
            pages = list(pool.map(lambda _: list(client.read_pages("accounts")), range(40)))

    assert len(pages) == 40 and all(len(p[0].rows) == 1 for p in pages)
    assert max(service.peaks) == 4  # never more than the connection allows
    after_throttle = service.peaks[12 + 12 :]  # well after the requests in flight at the 429 are done
    assert after_throttle and max(after_throttle) <= 3
    assert client.throttle.concurrency == 3  # halved to 2, then one step back after 20 successes
    assert client.request_counts["retry"] == 1


def test_the_throttle_halves_the_concurrency_on_429_and_grows_back_step_by_step():
    throttle = Throttle(max_concurrency=8, max_batch_size=100, grow_after=3)
    throttle.on_throttled()
    throttle.on_throttled()
    assert (throttle.concurrency, throttle.batch_size) == (2, 100)  # a 429 leaves the batch size
    for _ in range(3):
        throttle.on_success()
    assert (throttle.concurrency, throttle.batch_size) == (3, 100)
    for _ in range(100):
        throttle.on_success()
    assert (throttle.concurrency, throttle.batch_size) == (8, 100)


def test_the_throttle_halves_the_batch_size_on_a_timeout_and_grows_it_back():
    throttle = Throttle(max_concurrency=8, max_batch_size=100, grow_after=3)
    throttle.on_too_slow()
    throttle.on_too_slow()
    assert (throttle.concurrency, throttle.batch_size) == (8, 25)  # a timeout leaves the concurrency
    for _ in range(3):
        throttle.on_success()
    assert throttle.batch_size == 35
    for _ in range(100):
        throttle.on_success()
    assert throttle.batch_size == 100


def dataverse_connection(max_concurrency):
    connection = Connection(
        kind=ConnectionKind.DATAVERSE,
        name="DV",
        environment_url="https://org.crm.dynamics.com",
        tenant="t",
        client_id="c",
        max_concurrency=max_concurrency,
    )
    connection.set_client_secret("secret")
    return connection


def test_parallel_dataverse_requests_drop_the_server_affinity_cookie_and_keep_the_others():
    clear_token_cache()
    cookies_sent = []

    def service(request):
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"token_type": "Bearer", "expires_in": 3599, "access_token": "t"})
        cookies_sent.append(request.headers.get("cookie", ""))
        headers = [
            ("Set-Cookie", "ARRAffinity=server-7; Path=/; HttpOnly"),
            ("Set-Cookie", "ARRAffinitySameSite=server-7; Path=/; SameSite=None; Secure"),
            ("Set-Cookie", "ReqClientId=abc; Path=/"),
        ]
        return httpx.Response(200, headers=headers, json={"value": []})

    for max_concurrency, affinity_kept in ((4, False), (1, True)):
        cookies_sent.clear()
        with override_transport(httpx.MockTransport(service)), open_client(dataverse_connection(max_concurrency)) as dv:
            list(dv.read_pages("accounts"))
            list(dv.read_pages("accounts"))
        assert "ReqClientId=abc" in cookies_sent[1]
        assert ("ARRAffinity=server-7" in cookies_sent[1]) is affinity_kept, (max_concurrency, cookies_sent)


def test_a_token_renewed_while_the_only_slot_is_held_does_not_wait_for_a_slot():
    """The token request runs inside the API request's slot: it must not need one itself (it would wait for ever)."""
    clear_token_cache()
    tokens = iter(["first", "second"])

    def service(request):
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"token_type": "Bearer", "expires_in": 3599, "access_token": next(tokens)})
        if request.headers["authorization"] == "Bearer first":
            return httpx.Response(401, json={"error": {"code": "InvalidAuthenticationToken"}})
        return httpx.Response(200, json={"value": [{"accountid": "78914942-34cb-ed11-b596-0022481d68cd"}]})

    with override_transport(httpx.MockTransport(service)), open_client(dataverse_connection(1)) as dv:
        finished = []
        reader = threading.Thread(target=lambda: finished.append(list(dv.read_pages("accounts"))), daemon=True)
        reader.start()
        reader.join(timeout=10)
    assert finished and len(finished[0][0].rows) == 1
