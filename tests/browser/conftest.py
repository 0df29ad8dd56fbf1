"""Debian's Chromium driven by Playwright, against pytest-django's live server.

Screenshots go to pytest's tmp dir; with SAVE_SCREENSHOTS=1 they replace the ones kept in docs/screenshots/ (not
on every run, so `make test` leaves the checkout clean)."""
import os
from pathlib import Path

import pytest
from django.db import connections
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import ROOT

CHROMIUM = "/usr/bin/chromium"  # Debian's package, installed by scripts/bootstrap; never `playwright install`
CHROMIUM_ARGS = ["--no-sandbox", "--headless=new", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def browser(monkeypatch) -> Browser:
    # Playwright's sync API keeps an event loop running in this thread, and Django refuses ORM calls where a
    # loop runs (SynchronousOnlyOperation). Nothing here is async: allow it for this test only.
    # Inside that loop asgiref gives the ORM connections of their own, so close them before leaving it, or
    # they outlive the test and keep the test database from being dropped.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
            connections.close_all()


@pytest.fixture
def screenshots(tmp_path) -> Path:
    if os.environ.get("SAVE_SCREENSHOTS") == "1":
        return ROOT / "docs" / "screenshots"
    return tmp_path


def log_in(page: Page, base_url: str, username: str, password: str, next_path: str) -> None:
    page.goto(f"{base_url}/admin/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    expect(page).to_have_url(f"{base_url}{next_path}")
