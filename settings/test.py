"""Test settings: the same real services, shorter timeouts and backoffs so retries run in seconds."""
from settings import *
from settings.local_secrets import load_into_environ

# The checkout's random secrets (settings/local_secrets.py), unless the environment has its own; in os.environ too,
# so the processes the e2e tests start get the same.
load_into_environ()
SECRET_KEY, ALLOCATION_API_TOKEN, PAYMENT_WEBHOOK_SECRET, REDIS_PASSWORD = (
    env(name) for name in ("SECRET_KEY", "ALLOCATION_API_TOKEN", "PAYMENT_WEBHOOK_SECRET", "REDIS_PASSWORD"))
CACHES["default"]["OPTIONS"]["PASSWORD"] = REDIS_PASSWORD
# The suite creates topics and ACLs and reads every topic: it is the admin principal (the processes the e2e tests
# start are each their own, from the Procfile).
KAFKA_USERNAME, KAFKA_PASSWORD = env("KAFKA_USERNAME"), env("KAFKA_PASSWORD")

RETRY_BASE_SECONDS = 0.2
RETRY_MAX_SECONDS = 2.0
ALLOCATION_API_TIMEOUT_SECONDS = 2.0
WORKER_BATCH_WAIT_SECONDS = 0.05
# Fast hashing in tests; PBKDF2 too, for users that log in to a pipeline subprocess running production settings.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", "django.contrib.auth.hashers.PBKDF2PasswordHasher"]
LOGGING["root"]["level"] = "WARNING"
