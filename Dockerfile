# syntax=docker/dockerfile:1
# docker build --build-arg REVISION=$(git rev-parse HEAD) \
#   -t registry.gitlab.com/flux-oci-trigger/flux-oci-trigger:0.1.0 .
# Without a Docker engine: scripts/build-image (buildah, on a Debian base made by mmdebstrap).
# BASE_IMAGE: any Debian bookworm image with CPython 3.11 as `python3` and its venv module;
# the build runs on it, the image only takes the runtime it needs from it.
ARG BASE_IMAGE=python:3.11.14-slim-bookworm

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# The image's sh: GitLab runs CI jobs in it through `sh` (ci/gitlab/notify.yml). From the
# base when it has busybox (scripts/build-image's does), else from Debian.
RUN command -v busybox >/dev/null || { apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends busybox && rm -rf /var/lib/apt/lists/*; }
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
# The project itself, without dependencies; then setuptools (build only) and pip leave.
# rootfs.py imports everything the exporter imports (a missing dependency fails here; the
# lock leaves out what kubernetes' unused asyncio client requires, so no `pip check`),
# prunes the environment and assembles /rootfs: the base's CPython and the libraries it
# links, CA certificates, passwd, busybox. Its docstring says what stays out, and why.
COPY pyproject.toml README.md ./
COPY exporter/ exporter/
COPY devenv/rootfs.py ./
RUN /opt/flux-oci-trigger/bin/pip install --quiet --no-deps --no-index --no-build-isolation . \
 && /opt/flux-oci-trigger/bin/pip uninstall --quiet --yes setuptools pip \
 && /opt/flux-oci-trigger/bin/python3 -I rootfs.py --busybox /opt/flux-oci-trigger /rootfs

# No package manager, no coreutils, no Perl: the runtime, the environment, busybox.
FROM scratch
COPY --from=build /rootfs /
COPY --from=build /opt/flux-oci-trigger /opt/flux-oci-trigger
# Runs on a read-only root filesystem: writes nothing, bytecode is compiled at build time.
ENV PATH=/opt/flux-oci-trigger/bin:/usr/bin \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MALLOC_ARENA_MAX=2
USER 65532:65532
EXPOSE 9798 9799
ENTRYPOINT ["flux-oci-trigger"]
CMD ["run"]
# Last, so that a new revision reuses every layer above.
ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG REVISION=
LABEL org.opencontainers.image.title="flux-oci-trigger" \
      org.opencontainers.image.description="Request Flux reconciliation when a new OCI artifact lands, and export how far behind each Flux OCI source is." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://gitlab.com/flux-oci-trigger/flux-oci-trigger" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
