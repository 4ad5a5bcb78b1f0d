# syntax=docker/dockerfile:1
# The bank-node image: `bank-node run --config /etc/bank-node/config.toml`.
#
# Build from the repository root (BuildKit picks up bank-node.Dockerfile.dockerignore):
#   docker build -f docker/bank-node.Dockerfile -t registry.example.com/consortium/bank-node:0.1.0 .
#
# Runs as UID/GID 10001 with a read-only root filesystem in Kubernetes (see
# helm/bank-node): it writes only to /tmp and its data volume.

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
RUN groupadd --system --gid 10001 banknode \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/bank-node --no-create-home \
        --shell /usr/sbin/nologin banknode
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# Fail the build early if the installed packages do not import.
RUN python -c "import bank_node.cli, he, models, tenseal, torch" && bank-node --help >/dev/null
WORKDIR /var/lib/bank-node
USER 10001:10001
# /metrics, /healthz and /readyz when the config sets metrics_port (the chart: 9100).
EXPOSE 9100
ENTRYPOINT ["bank-node"]
CMD ["run", "--config", "/etc/bank-node/config.toml"]
