# syntax=docker/dockerfile:1
# The portal image: gunicorn serving consortium.wsgi. The same image runs the
# round scheduler (`python manage.py run_scheduler`) and the migrations Job.
#
# Build from the repository root (BuildKit picks up portal.Dockerfile.dockerignore):
#   docker build -f docker/portal.Dockerfile -t registry.example.com/consortium/portal:0.1.0 .
#
# Runs as UID/GID 10001 with a read-only root filesystem in Kubernetes (see
# helm/consortium-portal): nothing here writes outside /tmp and the blob volume.

# Pinned patch release; pin the digest too (python:3.11.14-slim-bookworm@sha256:...)
# in the registry that builds release images.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, from PyTorch's CPU index: the plain PyPI wheel (or an open range
# resolved by another package) is a multi-GB CUDA build. The project's range
# (torch>=2.4,<2.14) then accepts this one and installs nothing more.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
WORKDIR /src
COPY pyproject.toml README.md ./
COPY consortium ./consortium
COPY audit ./audit
COPY he ./he
COPY models ./models
COPY bank_node ./bank_node
# A regular (non-editable) install: the runtime stage copies only /opt/venv.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install . \
    && pip check

FROM ${PYTHON_IMAGE} AS runtime
# No apt packages needed: the wheels bundle their native libraries (torch its
# libgomp, psycopg2-binary its libpq); TenSEAL needs only libstdc++, which the
# slim image has.
RUN groupadd --system --gid 10001 consortium \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin consortium
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY manage.py ./
# gunicorn hooks for Prometheus's multiprocess mode (see the file); the chart passes
# --config=/app/gunicorn.conf.py, and gunicorn also reads ./gunicorn.conf.py by itself.
COPY consortium/gunicorn.conf.py /app/gunicorn.conf.py
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=consortium.settings \
    CONSORTIUM_VAR_DIR=/tmp/consortium \
    CONSORTIUM_BLOB_DIR=/var/lib/consortium/blobs
# Fail the build early if the installed packages do not import (no settings needed).
RUN python -c "import consortium, audit, he, models, gunicorn, psycopg2, tenseal, torch"
USER 10001:10001
EXPOSE 8000
CMD ["gunicorn", "consortium.wsgi", "--config=/app/gunicorn.conf.py", "--bind=0.0.0.0:8000", \
     "--workers=3", "--worker-tmp-dir=/tmp", "--access-logfile=-", "--error-logfile=-"]
