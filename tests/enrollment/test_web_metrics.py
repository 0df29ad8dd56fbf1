"""The web app's /metrics (who may read it) and the request metrics middleware."""
import pytest
from prometheus_client import REGISTRY

REMOTE = {"REMOTE_ADDR": "10.20.30.40"}


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_from_loopback_list_the_web_and_the_pipeline_metrics(client):
    response = client.get("/metrics")  # the test client's REMOTE_ADDR is 127.0.0.1
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    text = response.content.decode()
    for name in ("http_requests_total", "http_request_duration_seconds", "pipeline_outbox_sent_total"):
        assert f"# TYPE {name}" in text


def test_metrics_refuse_other_hosts_and_proxied_requests_without_the_token(client):
    assert client.get("/metrics", **REMOTE).status_code == 403
    # a reverse proxy on the same host makes every public request come from loopback
    assert client.get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 403
    assert client.get("/metrics", HTTP_FORWARDED="for=203.0.113.9").status_code == 403


def test_metrics_accept_the_bearer_token_from_anywhere(client, settings):
    settings.METRICS_TOKEN = "a-long-scrape-token"
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer a-long-scrape-token", **REMOTE).status_code == 200
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong", **REMOTE).status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="a-long-scrape-token", **REMOTE).status_code == 403


def test_an_empty_token_setting_accepts_no_token(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ", **REMOTE).status_code == 403


@pytest.mark.django_db
def test_webhook_requests_are_counted_and_timed_by_route_and_status(client):
    labels = {"route": "payment-confirmation", "method": "POST"}
    response = client.post("/api/payments/confirmations", data=b"{}", content_type="application/json")
    status = str(response.status_code)
    assert status.startswith("4")  # unsigned
    before_count = sample("http_requests_total", **labels, status=status)
    before_timed = sample("http_request_duration_seconds_count", route="payment-confirmation")

    client.post("/api/payments/confirmations", data=b"{}", content_type="application/json")

    assert sample("http_requests_total", **labels, status=status) == before_count + 1
    assert sample("http_request_duration_seconds_count", route="payment-confirmation") == before_timed + 1


def test_unknown_paths_share_one_label(client):
    before = sample("http_requests_total", route="unmatched", method="GET", status="404")
    client.get("/no/such/page-1")
    client.get("/no/such/page-2")
    assert sample("http_requests_total", route="unmatched", method="GET", status="404") == before + 2
