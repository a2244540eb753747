# SchemaHub: the `schemahub` CLI in a small, non-root image. The scheduled AWS tasks
# (terraform/) run it with a command per job: ingest, transform, compact, check.
#
#   docker build -t schemahub .
#   docker run --rm -e SCHEMAHUB_LAKE=s3://bucket/lake -e SCHEMAHUB_LOCKS=dynamodb://locks schemahub ingest
#
# BASE_IMAGE is pinned to an exact Python release; pin its digest too in your registry
# mirror (`--build-arg BASE_IMAGE=python:3.11.14-slim-bookworm@sha256:...`).
ARG BASE_IMAGE=python:3.11.14-slim-bookworm
# checkov:skip=CKV_DOCKER_7:The version tag is in BASE_IMAGE's default above; checkov does not expand ARGs.

# -- builder: wheels for schemahub and every pinned dependency, installed into a venv ---
FROM ${BASE_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
RUN python -m pip wheel --wheel-dir /wheels --constraint constraints.txt . \
    && python -m venv /opt/schemahub \
    && /opt/schemahub/bin/pip install --no-index --find-links /wheels --no-compile schemahub \
    && /opt/schemahub/bin/pip uninstall --yes pip setuptools \
    && find /opt/schemahub -depth -name '__pycache__' -type d -exec rm -rf {} +

# -- runtime: adds only the venv (no pip in it); no compilers, wheels or caches ---------
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="schemahub" \
      org.opencontainers.image.description="Crypto trade data: raw lake, unified Delta table, SQL" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --gid 10001 schemahub \
    && useradd --uid 10001 --gid schemahub --no-create-home --home-dir /tmp --shell /usr/sbin/nologin schemahub
COPY --from=builder /opt/schemahub /opt/schemahub
# HOME=/tmp: the tasks run with a read-only root filesystem and a scratch volume at /tmp.
ENV PATH=/opt/schemahub/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp
USER 10001:10001
WORKDIR /tmp
# Proves the interpreter, the package and its native extensions (DuckDB, Arrow, Delta) load.
HEALTHCHECK --interval=5m --timeout=30s --start-period=10s --retries=1 \
    CMD ["schemahub", "doctor", "--offline"]
ENTRYPOINT ["schemahub"]
CMD ["--help"]
