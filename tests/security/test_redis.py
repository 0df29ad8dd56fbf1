"""Redis requires the password, and the page cache holds JSON only: a client on the same network without the
password can write nothing, and a value planted with it is data, never code (pickle would run it)."""
import os
import pickle
import urllib.parse

import pytest
import redis
from django.conf import settings

from enrollment.cache_invalidation import home_key
from tests.factories import StudentFactory

pytestmark = pytest.mark.django_db


def _address() -> tuple[str, int]:
    url = urllib.parse.urlparse(settings.CACHES["default"]["LOCATION"])
    return url.hostname, url.port


class Boom:
    def __reduce__(self):  # what a pickle payload does when loaded: run a function of the attacker's choice
        return (exec, ("import pathlib; pathlib.Path('/tmp/pwned-by-pickle').touch()",))


def test_a_client_without_the_password_can_neither_read_nor_write(redis_cache):
    host, port = _address()
    stranger = redis.Redis(host=host, port=port, socket_timeout=2)
    with pytest.raises(redis.AuthenticationError):
        stranger.set("student:home:1", pickle.dumps(Boom()))
    with pytest.raises(redis.AuthenticationError):
        stranger.keys("*")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host=host, port=port, password="guess", socket_timeout=2).ping()


def test_a_planted_pickle_is_never_loaded_and_the_page_is_rebuilt(admin_client, redis_cache):
    student = StudentFactory(name="Ada")
    host, port = _address()
    insider = redis.Redis(host=host, port=port, password=settings.CACHES["default"]["OPTIONS"]["PASSWORD"])
    key = redis_cache.make_key(home_key(student.pk))
    insider.set(key, pickle.dumps(Boom()))
    response = admin_client.get(f"/api/students/{student.pk}/home")
    assert response.status_code == 200 and response.json()["student"]["name"] == "Ada"
    assert not os.path.exists("/tmp/pwned-by-pickle")
    assert insider.get(key).startswith(b"{")  # overwritten with the JSON page
