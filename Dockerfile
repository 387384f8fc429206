# syntax=docker/dockerfile:1
# docker build -t registry.gitlab.com/flux-oci-trigger/flux-oci-trigger:0.1.0 .
# Without a Docker engine: scripts/build-image (buildah, on a Debian base made by mmdebstrap).
# BASE_IMAGE: any Debian bookworm image with CPython 3.11 as `python3` and its venv module.
ARG BASE_IMAGE=python:3.11.14-slim-bookworm

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# A directory with the lock's wheels, mounted for the build, can stand in for the index
# (buildah bud -v DIR:/wheels:ro --build-arg WHEELS=/wheels); hashes are checked either way.
ARG WHEELS=
WORKDIR /src
# Dependencies come only from requirements.lock: exact versions, wheels checked by hash.
# Refresh it after changing pyproject's dependencies: .venv/bin/python -m devenv.image lock
COPY requirements.lock ./
RUN python3 -m venv /opt/flux-oci-trigger \
 && /opt/flux-oci-trigger/bin/pip install --quiet --require-hashes --no-deps \
      --only-binary=:all: ${WHEELS:+--no-index --find-links="$WHEELS"} -r requirements.lock
# The project itself, without dependencies; then setuptools (build only) and pip leave, and
# so does the kubernetes package's asyncio client (half its size), which nothing imports.
COPY pyproject.toml README.md ./
COPY exporter/ exporter/
RUN /opt/flux-oci-trigger/bin/pip install --quiet --no-deps --no-index --no-build-isolation . \
 && /opt/flux-oci-trigger/bin/pip check \
 && /opt/flux-oci-trigger/bin/pip uninstall --quiet --yes setuptools pip \
 && rm -r /opt/flux-oci-trigger/lib/python3*/site-packages/kubernetes/aio

FROM ${BASE_IMAGE}
ARG BASE_IMAGE
LABEL org.opencontainers.image.title="flux-oci-trigger" \
      org.opencontainers.image.description="Request Flux reconciliation when a new OCI artifact lands, and export how far behind each Flux OCI source is." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
COPY --from=build /opt/flux-oci-trigger /opt/flux-oci-trigger
# Runs on a read-only root filesystem: writes nothing, bytecode is compiled at build time.
ENV PATH=/opt/flux-oci-trigger/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MALLOC_ARENA_MAX=2
USER 65532:65532
EXPOSE 9798 9799
ENTRYPOINT ["flux-oci-trigger"]
CMD ["run"]
