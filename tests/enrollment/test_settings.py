import os
import subprocess

from tests.conftest import ROOT, secrets_env

PRINT = "from django.conf import settings as s; print(s.DEBUG, s.DATABASES['default']['NAME'], s.KAFKA_BROKERS)"


def _settings_in_subprocess(**env):
    base = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "settings", **secrets_env()}
    return subprocess.run(
        [str(ROOT / ".venv/bin/python"), "-c", f"import django; django.setup(); {PRINT}"],
        cwd=ROOT, env={**base, **env}, capture_output=True, text=True, check=True,
    ).stdout.split()


def test_debug_is_off_unless_asked_for_and_defaults_point_at_the_local_stack():
    assert _settings_in_subprocess() == ["False", "enrollment", "127.0.0.1:19092"]


def test_settings_come_from_the_environment():
    out = _settings_in_subprocess(DEBUG="1", DATABASE_URL="postgres://u:p@db.example:5432/prod", KAFKA_BROKERS="k:9092")
    assert out == ["True", "prod", "k:9092"]
