"""Deployment: `check --deploy` with production values, static files under gunicorn, the container files.

No Docker engine here: the compose file is parsed and checked against the Procfile and the settings that have
no safe production default; `docker-compose config` validates it too where that binary is installed.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

PY = str(ROOT / ".venv" / "bin" / "python")
# Settings whose default only suits a laptop: every app container must be given a value.
REQUIRED_IN_PRODUCTION = ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "REDIS_PASSWORD", "KAFKA_BROKERS",
                          "KAFKA_USERNAME", "KAFKA_PASSWORD", "ADMIN_SERVICE_URL", "ALLOCATION_API_TOKEN",
                          "PAYMENT_WEBHOOK_SECRET", "ALLOWED_HOSTS")
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "p9Xc2-long-random-production-secret-key-0123456789-abcdefghijkl",
    "ALLOWED_HOSTS": "enroll.example.com,127.0.0.1",
    "ALLOCATION_API_TOKEN": "prod-allocation-token-7f3a",
    "PAYMENT_WEBHOOK_SECRET": "prod-webhook-secret-91bd",
    "REDIS_PASSWORD": "prod-redis-password-5c1e",
    "KAFKA_USERNAME": "web",
    "KAFKA_PASSWORD": "prod-kafka-password-0d7a",
    "KAFKA_BROKERS": "kafka-1:9092,kafka-2:9092,kafka-3:9092",
    "KAFKA_TOPIC_REPLICATION": "3",  # with 2 in sync, the default minimum for 3 replicas
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_PROXY_SSL_HEADER": "1",
    "SESSION_COOKIE_SECURE": "1",
    "CSRF_COOKIE_SECURE": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "STATIC_MANIFEST": "1",
}


def run(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "settings", "LOG_LEVEL": "WARNING"}
    return subprocess.run(args, cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=timeout)


# --- settings ------------------------------------------------------------------------------------
def test_check_deploy_passes_with_production_values():
    result = run(PY, "manage.py", "check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


SECRETS = ("SECRET_KEY", "ALLOCATION_API_TOKEN", "PAYMENT_WEBHOOK_SECRET", "REDIS_PASSWORD", "KAFKA_PASSWORD")


@pytest.mark.parametrize("command", [
    [PY, "manage.py", "check"],
    [PY, "manage.py", "consume_allocations", "--help"],
    [PY, "-c", "import settings.wsgi"],  # what gunicorn loads
])
def test_with_debug_off_no_process_starts_without_its_secrets_and_the_message_names_each(command):
    result = run(*command, env={})
    assert result.returncode != 0
    assert "refusing to start with DEBUG off" in result.stderr
    for name in SECRETS:
        assert f"{name} is unset" in result.stderr


def test_a_local_default_or_the_placeholder_is_refused_too():
    from enrollment.checks import LOCAL_VALUES

    given = {**PRODUCTION, "SECRET_KEY": LOCAL_VALUES["SECRET_KEY"],
             "PAYMENT_WEBHOOK_SECRET": "change-me          # HMAC-SHA256 signing secret"}
    result = run(PY, "manage.py", "check", env=given)
    assert result.returncode != 0
    assert "SECRET_KEY has its local default value" in result.stderr
    assert "PAYMENT_WEBHOOK_SECRET is the placeholder 'change-me' of .env.example" in result.stderr
    assert "ALLOCATION_API_TOKEN" not in result.stderr


def test_with_debug_on_the_local_defaults_start_and_check_deploy_names_them():
    result = run(PY, "manage.py", "check", "--deploy", "--fail-level", "WARNING", env={"DEBUG": "1"})
    assert result.returncode != 0
    for check_id in ("security.W004", "security.W008", "security.W012", "security.W016", "security.W018"):
        assert check_id in result.stderr
    for name in SECRETS[:3]:
        assert f"(enrollment.W001) {name} has its local default value" in result.stderr
    assert "(enrollment.W001) REDIS_PASSWORD is unset" in result.stderr
    assert "(enrollment.W001) KAFKA_PASSWORD is unset" in result.stderr


@pytest.fixture(scope="module")
def collected(tmp_path_factory) -> Path:
    """collectstatic as the Dockerfile runs it (manifest storage), into a temporary folder."""
    root = tmp_path_factory.mktemp("static")
    result = run(PY, "manage.py", "collectstatic", "--noinput", env={**PRODUCTION, "STATIC_ROOT": str(root)},
                 timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return root


def test_collectstatic_writes_the_admin_css_hashed_and_compressed(collected):
    assert (collected / "admin" / "css" / "base.css").is_file()
    hashed = json.loads((collected / "staticfiles.json").read_text())["paths"]["admin/css/base.css"]
    assert re.fullmatch(r"admin/css/base\.[0-9a-f]{12}\.css", hashed)
    assert (collected / hashed).is_file()
    assert (collected / f"{hashed}.gz").is_file()


# --- the web app under gunicorn, production settings ------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def gunicorn(collected, tmp_path_factory):
    port = _free_port()
    env = {**PRODUCTION, "STATIC_ROOT": str(collected),
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path_factory.mktemp("prometheus"))}
    log = tmp_path_factory.mktemp("gunicorn") / "stderr.log"
    process = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "gunicorn"), "settings.wsgi", "--config", "python:settings.gunicorn",
         "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "2"],
        cwd=ROOT, env={"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "settings", "LOG_LEVEL": "WARNING", **env},
        stdout=subprocess.DEVNULL, stderr=log.open("w"),
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if _get(port, "/healthz")[0] == 200:
                break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"gunicorn did not start: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    yield port
    process.terminate()
    process.wait(15)


HTTPS = {"X-Forwarded-Proto": "https"}  # as the TLS-terminating proxy sets it


def test_admin_is_served_with_its_hashed_static_files_under_gunicorn(gunicorn, collected):
    status, headers, body = _get(gunicorn, "/admin/login/", HTTPS)
    assert status == 200
    assert headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    css = re.search(rb'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', body)
    assert css, body[:500]
    status, headers, content = _get(gunicorn, css.group(1).decode(), HTTPS)
    assert status == 200
    assert content == (collected / css.group(1).decode().removeprefix("/static/")).read_bytes()
    assert "immutable" in headers["cache-control"]


def test_plain_http_is_redirected_except_for_probes(gunicorn):
    status, headers, _ = _get(gunicorn, "/admin/login/")
    assert status == 301 and headers["location"].startswith("https://")
    assert _get(gunicorn, "/healthz")[0] == 200


def test_metrics_add_up_every_gunicorn_worker(gunicorn):
    for _ in range(6):
        assert _get(gunicorn, "/healthz")[0] == 200
    status, _, body = _get(gunicorn, "/metrics")
    assert status == 200
    counted = re.search(rb'^http_requests_total\{method="GET",route="healthz",status="200"\} (\S+)$', body, re.M)
    assert counted and float(counted.group(1)) >= 6  # whichever worker answered the scrape


def test_the_access_log_goes_to_stdout_unless_turned_off(monkeypatch):
    import importlib

    import settings.gunicorn as config

    try:
        monkeypatch.delenv("WEB_ACCESS_LOG", raising=False)
        assert importlib.reload(config).accesslog == "-"
        monkeypatch.setenv("WEB_ACCESS_LOG", "")
        assert importlib.reload(config).accesslog is None
        monkeypatch.setenv("WEB_ACCESS_LOG", "/var/log/web/access.log")
        assert importlib.reload(config).accesslog == "/var/log/web/access.log"
    finally:
        monkeypatch.undo()
        importlib.reload(config)


# --- docs --------------------------------------------------------------------------------------------
def test_operations_doc_lists_every_metric_and_the_topup_cron_line():
    from prometheus_client.metrics import MetricWrapperBase

    from enrollment import web_metrics
    from workers import metrics

    doc = (ROOT / "docs" / "operations.md").read_text()
    names = [m._name for module in (metrics, web_metrics) for m in vars(module).values()
             if isinstance(m, MetricWrapperBase)]
    assert len(names) >= 18
    missing = [name for name in names if f"`{name}" not in doc]  # counters are listed with their _total suffix
    assert not missing, f"docs/operations.md does not list {missing}"
    assert "0 */6 * * * cd /srv/app && .venv/bin/python manage.py topup_sessions" in doc
    assert "per-process throughput** (docs/benchmarks.md" in doc.lower()  # figures measured by make bench


# --- containers --------------------------------------------------------------------------------------
def procfile() -> dict[str, str]:
    path = ROOT / "Procfile"
    if not path.exists():
        pytest.fail("no Procfile")
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return dict(line.split(":", 1) for line in lines)


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def app_services(services: dict) -> dict:
    """The services built from the project's Dockerfile."""
    return {name: s for name, s in services.items() if "build" in s}


def _manage_command(command: str) -> str | None:
    words = shlex.split(command)
    return words[words.index("manage.py") + 1] if "manage.py" in words else None


def test_every_procfile_process_has_a_service_running_the_same_command():
    services = compose()["services"]
    dockerfile_cmd = " ".join(json.loads(re.search(r"^CMD (\[.*?\])$", (ROOT / "Dockerfile").read_text(),
                                                   re.M | re.S).group(1).replace("\\\n", "")))
    for name, command in procfile().items():
        assert name in services, f"Procfile process {name} has no service"
        service_cmd = services[name].get("command")
        service_cmd = " ".join(service_cmd) if isinstance(service_cmd, list) else service_cmd or dockerfile_cmd
        wanted = _manage_command(command)
        if wanted:
            assert _manage_command(service_cmd) == wanted, (name, service_cmd)
        else:
            assert "gunicorn settings.wsgi" in command and "gunicorn settings.wsgi" in service_cmd


def test_every_app_service_is_given_each_setting_without_a_safe_default():
    services = app_services(compose()["services"])
    assert set(procfile()) <= set(services)
    for name, service in services.items():
        environment = service.get("environment") or {}
        for setting in REQUIRED_IN_PRODUCTION:
            assert str(environment.get(setting) or "").strip(), f"{name}: {setting} has no value"
        assert environment["DEBUG"] == "0"


def test_services_restart_have_health_checks_and_wait_for_the_one_shot_init():
    services = compose()["services"]
    init = services["init"]
    init_command = " ".join(init["command"])
    assert "check --deploy" in init_command and "migrate" in init_command and "create_topics" in init_command
    assert init["restart"] == "no"
    assert init["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name, service in services.items():
        if name == "init":
            continue
        assert service["restart"] == "unless-stopped", name
        if name != "topup":  # a sleeping loop has nothing to probe
            assert service["healthcheck"]["test"], name
        if "build" in service:
            assert service["depends_on"]["init"]["condition"] == "service_completed_successfully", name
    for name, service in services.items():
        image = service.get("image", "")
        if "build" not in service:
            assert re.search(r":\d+(\.\d+)+", image), f"{name}: {image} is not pinned to a version"
    assert {"postgres", "redis", "kafka", "topup"} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:15.")
    assert services["redis"]["image"].startswith("redis:7.")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    topup = " ".join(services["topup"]["command"])
    assert "manage.py topup_sessions" in topup and "sleep 21600" in topup


def test_dockerfile_is_slim_pinned_non_root_and_collects_static_files():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11\.\d+-slim", text, re.M)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert "pip install -r requirements.txt" in text
    assert "collectstatic --noinput" in text
    assert re.search(r"^CMD \[\"gunicorn\", \"settings\.wsgi\"", text, re.M)
    assert "requirements-test" not in text  # the image ships no pytest, playwright or linters
    runtime = (ROOT / "requirements.txt").read_text().lower()
    packages = set(re.findall(r"^([a-z0-9-]+)", runtime, re.M))
    assert not {"pytest", "pytest-django", "playwright", "factory-boy", "ruff", "import-linter"} & packages
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv", "var/", ".git"} <= set(ignored)


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="docker-compose is not installed")
def test_docker_compose_validates_the_file_and_refuses_missing_secrets():
    secrets = {"SECRET_KEY": "x" * 50, "POSTGRES_PASSWORD": "pw", "ALLOCATION_API_TOKEN": "t",
               "PAYMENT_WEBHOOK_SECRET": "s"}
    ok = run("docker-compose", "-f", "docker-compose.yml", "config", "-q", env=secrets, timeout=60)
    assert ok.returncode == 0, ok.stderr
    missing = run("docker-compose", "-f", "docker-compose.yml", "config", "-q",
                  env={k: v for k, v in secrets.items() if k != "PAYMENT_WEBHOOK_SECRET"}, timeout=60)
    assert missing.returncode != 0 and "PAYMENT_WEBHOOK_SECRET" in missing.stderr
