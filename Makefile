# The commands a user runs. Everything installs itself on a fresh Debian 12 machine (as root).
PY := .venv/bin/python
export DJANGO_SETTINGS_MODULE ?= settings
# This checkout's random secrets for the local stack (settings/local_secrets.py: var/local-secrets.env, made
# once); with DEBUG off no process starts without them. Values already in the environment win.
$(foreach pair,$(shell python3 settings/local_secrets.py),$(eval $(subst =, ?= ,$(pair))))
export SECRET_KEY ALLOCATION_API_TOKEN PAYMENT_WEBHOOK_SECRET REDIS_PASSWORD KAFKA_PASSWORD_ADMIN KAFKA_PASSWORD_WEB \
	KAFKA_PASSWORD_RELAY KAFKA_PASSWORD_PURCHASES KAFKA_PASSWORD_ALLOCATIONS KAFKA_PASSWORD_SESSIONS \
	KAFKA_PASSWORD_CACHE KAFKA_PASSWORD_DEAD_LETTERS
# The commands the targets run themselves (migrate, create_topics, the demo's and the bench's drivers) are admin;
# each Procfile process is its own principal.
export KAFKA_USERNAME ?= admin
export KAFKA_PASSWORD ?= $(KAFKA_PASSWORD_ADMIN)

# `STACK_KAFKA_BROKERS=3 make ...` (or CLUSTER=3) runs everything on the replicated three-broker cluster of
# scripts/stack: the clients bootstrap from all three brokers, topics get 3 replicas with 2 in sync.
ifeq ($(CLUSTER),3)
STACK_KAFKA_BROKERS := 3
endif
ifeq ($(STACK_KAFKA_BROKERS),3)
export STACK_KAFKA_BROKERS
export KAFKA_BROKERS ?= 127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096
export KAFKA_TOPIC_REPLICATION ?= 3
export KAFKA_TOPIC_MIN_INSYNC_REPLICAS ?= 2
endif

.PHONY: bootstrap stack-up stack-down stack-status migrate topics static lint test test-cluster demo run bench chaos scale-out

bootstrap:            ## install Debian packages, the virtualenv and the Kafka jars (idempotent)
	bash scripts/bootstrap

stack-up: bootstrap   ## start PostgreSQL, Redis and Kafka (reuses what runs)
	bash scripts/stack up

stack-down:           ## stop the local stack
	bash scripts/stack down

stack-status:
	bash scripts/stack status

migrate: stack-up
	$(PY) manage.py migrate --noinput

topics: stack-up
	$(PY) manage.py create_topics

lint: bootstrap       ## ruff, and the import contracts of .importlinter (the layers and who may import whom)
	.venv/bin/ruff check .
	.venv/bin/lint-imports --no-cache

test: lint stack-up   ## the linters, then the whole suite on the real services
	$(PY) -m pytest

test-cluster: stack-up ## the tests that start a three-broker cluster beside the stack (~70 s; not in make test)
	$(PY) -m pytest -m cluster

N ?= 1000
demo: stack-up static ## the main job: N signed payments through the whole pipeline, a report, invariants checked
	$(PY) scripts/demo.py --payments $(N)

static: bootstrap      ## collect the admin's static files (whitenoise serves them with DEBUG off)
	$(PY) manage.py collectstatic --noinput -v0

run: migrate topics static  ## the pipeline in the foreground (Procfile); Ctrl-C stops all
	.venv/bin/honcho -f Procfile start

# N and DURATION, when given on the command line: `make chaos CLUSTER=3 N=1000 DURATION=60` is a short run.
chaos: stack-up       ## 10,000 enrollments while processes are killed and the broker, PostgreSQL and Redis restart
	$(PY) bench/chaos.py $(if $(filter command line,$(origin N)),--payments $(N)) \
		$(if $(DURATION),--duration $(DURATION)) $(if $(filter 3,$(CLUSTER)),--cluster)

scale-out: stack-up   ## 3 consumers per stage on 6 partitions, one joins and one leaves under load: pauses, no duplicates
	$(PY) bench/scale_out.py $(if $(filter command line,$(origin N)),--payments $(N))

bench: stack-up       ## benchmarks (not part of make test): writes docs/benchmarks.md
	.venv/bin/pip install -q --disable-pip-version-check -r requirements-bench.txt
	$(PY) bench/run.py
