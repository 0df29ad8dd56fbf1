# The one image of every process: web (the default command), relay, consumers, jobs (see docker-compose.yml).
# Base pinned by exact version tag; pin by digest too (python:3.11.13-slim-bookworm@sha256:...) if your registry
# policy asks for it.
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=settings \
    STATIC_MANIFEST=1 \
    STATIC_ROOT=/app/static

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app

WORKDIR /app

# Dependencies first: this layer is rebuilt only when requirements.txt changes. Every package ships a wheel
# (psycopg[binary], confluent-kafka with librdkafka inside), so no compiler is needed.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .

# Hashed, compressed static files (admin CSS/JS) baked into the image; whitenoise serves them from STATIC_ROOT.
# The code stays owned by root and read-only for the app user.
RUN python manage.py collectstatic --noinput \
    && python -m compileall -q /app

USER app
EXPOSE 8000

CMD ["gunicorn", "settings.wsgi", "--config", "python:settings.gunicorn", \
     "--bind", "0.0.0.0:8000", "--workers", "2", "--threads", "4", \
     "--graceful-timeout", "10"]
