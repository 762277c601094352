# The worker: `python -m worker run` (it migrates the database and creates its topics
# itself). Used by docker-compose.yml; needs KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# README.md* : pyproject names a readme the repo may not have yet.
COPY pyproject.toml README.md* ./
COPY worker ./worker
COPY schemas ./schemas
RUN pip install . \
    && useradd --system --uid 10001 --no-create-home worker

USER worker
CMD ["python", "-m", "worker", "run"]
