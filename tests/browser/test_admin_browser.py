"""The dead letter admin in a real browser: Debian's Chromium driven by Playwright against pytest-django's
live server, with the real Kafka behind the replay action.

Screenshots of the list and detail pages go to pytest's tmp dir; with SAVE_SCREENSHOTS=1 they replace the ones
kept in docs/screenshots/ (tests/browser/conftest.py).
"""
import re
import uuid

import pytest
from django.contrib.auth.models import Permission
from playwright.sync_api import Page, expect

from purchases.models import Payment
from tests.browser.conftest import log_in
from tests.factories import DeadLetterFactory, PaymentFactory, PurchaseFactory
from tests.workers import support
from workers.models import DeadLetter, OutboxEvent, OutboxPending, ProcessedEvent

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LIST_PATH = "/admin/workers/deadletter/"


def _enrollment_so_far() -> Payment:
    """What the pipeline leaves before allocation gives up: payment, purchase, events emitted and handled."""
    payment = PaymentFactory()
    PurchaseFactory(payment=payment)
    for event_type, group in (("PURCHASE_CONFIRMED", "purchase-creation-workers"),
                              ("PURCHASE_CREATED", "cache-invalidation-workers")):
        event_id = uuid.uuid4()
        OutboxEvent.objects.create(event_id=event_id, event_type=event_type, topic=event_type.lower(),
                                   key=str(payment.student_id), value=b"{}", correlation_id=payment.correlation_id)
        OutboxPending.objects.filter(outbox__event_id=event_id).delete()  # sent
        ProcessedEvent.objects.create(consumer=group, event_id=event_id, event_type=event_type,
                                      correlation_id=payment.correlation_id)
    return payment


def _dead_letters(payment: Payment) -> list[DeadLetter]:
    """A realistic review queue: allocations that ran out of trainers (the first one is the payment's), a
    session stage bug, a poison message, and some rows already handled."""
    rows = [DeadLetterFactory(correlation_id=payment.correlation_id, student_id=payment.student_id)]
    rows += [DeadLetterFactory(student_id=1000 + i) for i in range(2)]
    rows.append(DeadLetterFactory(stage="sessions", consumer_group="session-scheduling-workers",
                                  event_type="TRAINER_ALLOCATED", error_class="builtins.ZeroDivisionError",
                                  error_message="division by zero", attempts=3))
    rows.append(DeadLetterFactory(stage="purchases", consumer_group="purchase-creation-workers", event_id=None,
                                  event_type="", correlation_id=None, student_id=None, payload=b"{not json",
                                  error_class="workers.envelope.InvalidEvent", attempts=0,
                                  error_message="message is not JSON: Expecting property name enclosed in double "
                                                "quotes: line 1 column 2 (char 1)"))
    rows.append(DeadLetterFactory(status=DeadLetter.Status.DISCARDED, status_changed_by="operator",
                                  status_reason="test purchase"))
    rows.append(DeadLetterFactory(status=DeadLetter.Status.RESOLVED, status_changed_by="operator"))
    return rows


def _log_in(page: Page, base_url: str, username: str, password: str) -> None:
    log_in(page, base_url, username, password, LIST_PATH)


def test_operator_filters_opens_and_replays_and_a_viewer_cannot(browser, live_server, topic_prefix,
                                                                   django_user_model, screenshots):
    rows = _dead_letters(_enrollment_so_far())
    target = rows[0]
    django_user_model.objects.create_superuser("operator", "operator@example.test", "operator-pw")
    viewer = django_user_model.objects.create_user("viewer", password="viewer-pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_deadletter"))

    page = browser.new_page(viewport={"width": 1600, "height": 900})
    _log_in(page, live_server.url, "operator", "operator-pw")
    page.click("#toggle-nav-sidebar")  # more room for the columns (and the screenshots)
    expect(page.locator("#dead-letter-status-counts")).to_contain_text("5New")

    # filter by stage in the sidebar
    page.locator('#changelist-filter details[data-filter-title="stage"] a', has_text="allocations").click()
    expect(page).to_have_url(f"{live_server.url}{LIST_PATH}?stage=allocations")
    stages = page.locator("#result_list tbody td.field-stage")
    expect(stages).to_have_count(5)  # 3 new + discarded + resolved
    assert set(stages.all_inner_texts()) == {"allocations"}

    # open one: a read-only page with the pretty payload and the traceback
    page.locator("#result_list th.field-id a", has_text=str(target.pk)).first.click()
    expect(page).to_have_url(re.compile(rf"{LIST_PATH}{target.pk}/change/"))
    expect(page.locator("pre.dl-payload")).to_contain_text(f'"event_id": "{target.event_id}"')
    expect(page.locator("pre.dl-traceback")).to_contain_text("NoTrainerAvailable")
    expect(page.locator(".field-status .readonly")).to_have_text("New")
    expect(page.locator("input[name=_save]")).to_have_count(0)
    page.screenshot(path=str(screenshots / "dead-letter-detail.png"), full_page=True)

    # back to the filtered list, select it, run "Replay selected dead letters"
    page.go_back()
    page.check(f'input[name=_selected_action][value="{target.pk}"]')
    page.select_option("select[name=action]", label="Replay selected dead letters")
    page.click("button[name=index]")
    expect(page.locator("ul.messagelist li.success")).to_contain_text("Replayed 1 dead letter(s)")
    row = page.locator("#result_list tbody tr", has=page.locator(f'input[value="{target.pk}"]'))
    expect(row.locator("td.field-status")).to_have_text("Replayed")
    expect(page.locator("#dead-letter-status-counts")).to_contain_text("1Replayed")
    page.screenshot(path=str(screenshots / "dead-letters-list.png"), full_page=True)

    row.locator("th.field-id a").click()
    expect(page.locator(".field-status .readonly")).to_have_text("Replayed")
    expect(page.locator(".field-status_changed_by .readonly")).to_have_text("operator")
    [message] = support.read_topic("purchase-created", 1)
    assert message.value() == bytes(target.payload)

    # the enrollment trace, from the dead letter: the whole story, the operator's replay included
    page.get_by_role("link", name=f"Enrollment trace of {target.correlation_id}").click()
    timeline = page.locator("#trace-timeline tbody tr")
    expect(timeline.first).to_contain_text("Payment received")
    expect(timeline.nth(-2)).to_contain_text("Dead-lettered by allocations (now replayed)")
    expect(timeline.last).to_contain_text(f"Dead letter {target.pk} replayed by operator")
    expect(page.locator("#trace-rows")).to_contain_text("Purchase")
    page.screenshot(path=str(screenshots / "enrollment-trace.png"), full_page=True)

    # a user with the view permission only: sees the dead letters, but no replay action anywhere
    viewer_page = browser.new_context(viewport={"width": 1600, "height": 900}).new_page()
    _log_in(viewer_page, live_server.url, "viewer", "viewer-pw")
    expect(viewer_page.locator("#result_list tbody tr")).to_have_count(len(rows))
    options = viewer_page.locator("select[name=action] option").all_inner_texts()
    assert not any("Replay" in option for option in options), options
    expect(viewer_page.get_by_text("Replay selected dead letters")).to_have_count(0)
    assert DeadLetter.objects.filter(status=DeadLetter.Status.REPLAYED).count() == 1
