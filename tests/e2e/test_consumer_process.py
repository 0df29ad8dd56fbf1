"""A stage's consumer as an operator runs it: a process that serves metrics and stops cleanly on SIGTERM."""
import signal
import uuid

import pytest
import requests

from enrollment.events import PURCHASE_CONFIRMED
from purchases.models import StudentCoursePurchase
from tests.e2e.harness import Pipeline, free_port, group_lag, wait_until
from tests.factories import PaymentFactory
from tests.workers import support
from workers.envelope import build_event

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_consumer_serves_metrics_and_commits_before_exiting_on_sigterm(topic_prefix, tmp_path):
    payments = [PaymentFactory() for _ in range(5)]
    events = [
        build_event(PURCHASE_CONFIRMED, {"payment_id": p.pk, "provider_payment_id": p.provider_payment_id,
                                         "student_id": p.student_id, "course_id": p.course_id,
                                         "amount": "49.00", "currency": "EUR"}, correlation_id=uuid.uuid4())
        for p in payments
    ]
    support.produce("purchase-confirmed", [(str(e.key).encode(), e.to_json()) for e in events])
    port = free_port()
    pipeline = Pipeline(tmp_path, PURCHASES_METRICS_PORT=str(port))
    pipeline.start("purchases")
    try:
        wait_until(lambda: StudentCoursePurchase.objects.count() == 5, 30, "purchases created")
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'pipeline_events_processed_total{stage="purchases"} 5.0' in metrics
        proc = pipeline.processes["purchases"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, pipeline.log("purchases")
    finally:
        pipeline.stop()
    assert group_lag("purchase-creation-workers", ["purchase-confirmed"]) == 0
    assert '"consumer stopped"' in pipeline.log("purchases") or "consumer stopped" in pipeline.log("purchases")
