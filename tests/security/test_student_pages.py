"""A student's pages answer only the student themself (by session, or by a token the platform issues) and staff
with the view permission. Anyone else gets the 404 of an id that does not exist (enrollment.access)."""
import datetime

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.test import Client

from enrollment.access import issue_token
from tests.factories import StudentFactory

pytestmark = pytest.mark.django_db
PAGES = ("home", "learning")
NOT_FOUND = (404, {"error": "not found"})


def _get(client: Client, student_id: int, page: str, token: str | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = client.get(f"/api/students/{student_id}/{page}", headers=headers)
    return response.status_code, response.json()


@pytest.fixture
def ada(django_user_model):
    return StudentFactory(name="Ada", user=django_user_model.objects.create_user("ada", password="pw"))


def _signed_in(django_user_model, username: str, *permissions: str, is_staff: bool = False) -> Client:
    user = django_user_model.objects.create_user(username, password="pw", is_staff=is_staff)
    user.user_permissions.add(*Permission.objects.filter(codename__in=permissions))
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("page", PAGES)
def test_anonymous_gets_the_404_of_an_unknown_id(ada, page):
    assert _get(Client(), ada.pk, page) == NOT_FOUND
    assert _get(Client(), 999_999_999, page) == NOT_FOUND  # the same answer: nothing to probe


@pytest.mark.parametrize("page", PAGES)
def test_the_student_reads_their_own_pages_and_no_one_elses(ada, page):
    other = StudentFactory()
    client = Client()
    client.login(username="ada", password="pw")
    status, body = _get(client, ada.pk, page)
    assert status == 200 and body["student"] == {"id": ada.pk, "name": "Ada"}
    assert _get(client, other.pk, page) == NOT_FOUND


@pytest.mark.parametrize("page", PAGES)
def test_staff_need_the_view_permission(ada, django_user_model, page):
    assert _get(_signed_in(django_user_model, "clerk", is_staff=True), ada.pk, page) == NOT_FOUND
    support = _signed_in(django_user_model, "support", "view_student", is_staff=True)
    assert _get(support, ada.pk, page)[0] == 200
    assert _get(support, 999_999_999, page) == NOT_FOUND


@pytest.mark.parametrize("page", PAGES)
def test_a_token_opens_its_own_student_only_until_it_expires(ada, settings, page):
    other = StudentFactory()
    token = issue_token(ada.pk)
    assert _get(Client(), ada.pk, page, token)[0] == 200
    assert _get(Client(), other.pk, page, token) == NOT_FOUND
    assert _get(Client(), ada.pk, page, token[:-2] + "xx") == NOT_FOUND  # tampered
    assert _get(Client(), ada.pk, page, "not-a-token") == NOT_FOUND
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=settings.STUDENT_TOKEN_MAX_AGE_SECONDS + 5)
    with time_machine.travel(later):
        assert _get(Client(), ada.pk, page, token) == NOT_FOUND


def test_pages_are_never_kept_by_shared_caches(ada):
    response = Client().get(f"/api/students/{ada.pk}/home", headers={"Authorization": f"Bearer {issue_token(ada.pk)}"})
    assert response["Cache-Control"] == "private, no-store"
