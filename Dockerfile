# syntax=docker/dockerfile:1
# docker build -t registry.gitlab.com/flux-oci-trigger/flux-oci-trigger:0.1.0 .

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter/ exporter/
RUN python -m venv /opt/flux-oci-trigger \
 && /opt/flux-oci-trigger/bin/pip install --no-compile . \
 && /opt/flux-oci-trigger/bin/python -m compileall -q /opt/flux-oci-trigger/lib

FROM python:3.11-slim
LABEL org.opencontainers.image.title="flux-oci-trigger" \
      org.opencontainers.image.description="Request Flux reconciliation when a new OCI artifact lands, and export how far behind each Flux OCI source is." \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/flux-oci-trigger /opt/flux-oci-trigger
ENV PATH=/opt/flux-oci-trigger/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MALLOC_ARENA_MAX=2
USER 65532:65532
EXPOSE 9798 9799
ENTRYPOINT ["flux-oci-trigger"]
CMD ["run"]
