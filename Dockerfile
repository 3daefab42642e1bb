# syntax=docker/dockerfile:1
# FlightDeck Operator image: the operator (`run`, the default) and the HTTP sidecar (`sidecar`)
# from one image. Build: docker build -t flightdeck-operator:0.1.0 .   (docs/operations.md)
#
# Pinned to an exact Python release on an exact Debian release; to pin by digest as well, pass
# --build-arg PYTHON_IMAGE=python:3.12.8-slim-bookworm@sha256:<digest>. Any base with python3 and
# its venv module works: hack/build-image.sh builds one from Debian's packages (no registry).
ARG PYTHON_IMAGE=python:3.12.8-slim-bookworm

# --- builder: build the wheel and install it, with its dependencies, into a virtualenv ---------
FROM ${PYTHON_IMAGE} AS builder
# A CA bundle for pip behind a TLS-inspecting proxy (a path the build mounts); unset elsewhere.
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
# Dependencies come as binary wheels (psycopg[binary], cryptography), so no compiler is needed.
# The virtualenv's own pip builds the wheel: the base needs no pip of its own.
RUN python3 -m venv /opt/flightdeck \
 && /opt/flightdeck/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/flightdeck/bin/pip install --only-binary=:all: /wheels/*.whl \
 && /opt/flightdeck/bin/pip uninstall --yes pip

# --- runtime: the interpreter and the virtualenv, nothing else -------------------------------
FROM ${PYTHON_IMAGE}
ARG UID=65532
LABEL org.opencontainers.image.title="flightdeck-operator" \
      org.opencontainers.image.description="Governs which release of an AI agent is live in each environment" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/flightdeck/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
COPY --from=builder /opt/flightdeck /opt/flightdeck
# The SQLite store's default location (a volume in the chart); owned by the runtime user.
RUN install --directory --owner=${UID} --group=${UID} --mode=0750 /var/lib/flightdeck
WORKDIR /var/lib/flightdeck
# A numeric, non-root user: Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER ${UID}:${UID}
EXPOSE 8080 8765
ENTRYPOINT ["flightdeck-operator"]
CMD ["run"]
