"""The pipeline console in a real browser, on a real purchases consumer: the operator watches the stage drain,
pauses it and sees its lag grow while payments arrive (signed webhooks to the live server, published through
the outbox), resumes it and sees it drain; a viewer sees no buttons.
The console refreshes itself: nothing here reloads the page after a payment."""
import threading
import time

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.db import connection
from playwright.sync_api import expect

from purchases.models import StudentCoursePurchase as Purchase
from tests.browser.conftest import log_in
from tools.lifecycle import Provider
from tools.seed import seed_catalog
from workers import registry
from workers.consumer import PAUSE_CHECK_SECONDS, StageConsumer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
CONSOLE = "/admin/workers/stagesample/"
REFRESHED = 20_000  # ms: a panel refresh (5 s), the broker's view of the commit, and slack for a busy machine


def _pay(base_url: str, pairs) -> None:
    """Signed payment confirmations to the live server's webhook, as the provider sends them."""
    provider = Provider(base_url, settings.PAYMENT_WEBHOOK_SECRET)
    for student, course in pairs:
        assert provider.confirm(student, course, f"console_{student}_{course}")


def _wait_for(done, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.2)


@pytest.fixture
def purchases_consumer(topic_prefix):
    """The real purchases stage, consuming in a thread of this process until the test ends."""
    stop = threading.Event()

    def run():
        try:
            StageConsumer(registry.stage("purchases"), batch_wait=0.2).run(should_stop=stop.is_set)
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(15)


def test_pause_shows_lag_growing_and_resume_shows_it_drain(browser, live_server, django_user_model, screenshots,
                                                           purchases_consumer):
    pairs = seed_catalog(24, courses=2)
    django_user_model.objects.create_superuser("operator", "operator@example.test", "operator-pw")
    viewer = django_user_model.objects.create_user("viewer", password="viewer-pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_stagesample"))

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    log_in(page, live_server.url, "operator", "operator-pw", CONSOLE)
    card = page.locator("#stage-purchases")
    expect(card).to_be_visible()
    expect(page.locator("#stage-allocations")).to_be_visible()  # every registered stage

    _pay(live_server.url, pairs[:12])
    _wait_for(lambda: Purchase.objects.count() == 12)
    expect(card).to_have_attribute("data-lag", "0", timeout=REFRESHED)

    card.get_by_placeholder("why (kept in the audit trail)").fill("trainer import running")
    card.get_by_role("button", name="Pause purchases").click()
    expect(page.locator("ul.messagelist li.success")).to_contain_text("Purchases paused")
    expect(card.locator(".paused")).to_contain_text("paused by admin:operator: trainer import running")

    time.sleep(PAUSE_CHECK_SECONDS * 2)  # the consumer has read the pause (it obeys within 5 s)
    _pay(live_server.url, pairs[12:])
    expect(card).to_have_attribute("data-lag", "12", timeout=REFRESHED)  # payments arrive, nothing consumed
    assert Purchase.objects.count() == 12
    page.screenshot(path=str(screenshots / "pipeline-console-paused.png"), full_page=True)

    card.get_by_role("button", name="Resume purchases").click()
    expect(page.locator("ul.messagelist li.success")).to_contain_text("Purchases resumed")
    expect(card).to_have_attribute("data-lag", "0", timeout=REFRESHED)
    assert Purchase.objects.count() == 24
    page.screenshot(path=str(screenshots / "pipeline-console.png"), full_page=True)

    viewer_page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    log_in(viewer_page, live_server.url, "viewer", "viewer-pw", CONSOLE)
    expect(viewer_page.locator("#stage-purchases")).to_be_visible()
    expect(viewer_page.get_by_role("button", name="Pause purchases")).to_have_count(0)
    expect(viewer_page.locator("form")).to_have_count(1)  # the log-out form only
