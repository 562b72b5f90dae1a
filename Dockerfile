# One image for all four services: `python -m services.<name>` picks the service.
# Build it with `make image`: its name and tag are deploy/kubernetes/kustomization.yaml's `images:` entry.
# Build stage: compilers and pip live here only.
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends build-essential && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Every transitive dependency pinned with its hashes (requirements.lock, `make lock`): the same pyproject.toml
# builds the same image next month. Installed before the code is copied, so a code change reuses this layer.
COPY requirements.lock ./
RUN python -m venv /opt/kizuna && /opt/kizuna/bin/pip install --upgrade pip \
    && /opt/kizuna/bin/pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY libs ./libs
COPY services ./services
# --no-deps: everything it needs came from the lock above; pip check fails the build if the lock fell behind.
RUN /opt/kizuna/bin/pip install --no-deps . && /opt/kizuna/bin/pip check

# Runtime stage: no build tools, a non-root user.
FROM python:3.11-slim-bookworm AS runtime
ENV PATH=/opt/kizuna/bin:$PATH PYTHONUNBUFFERED=1 KIZUNA_HTTP_HOST=0.0.0.0
# A numeric user: Kubernetes' runAsNonRoot can only verify a numeric USER (a name gives
# CreateContainerConfigError). The manifests' runAsUser/runAsGroup say the same 10001.
RUN groupadd --system --gid 10001 kizuna && useradd --system --uid 10001 --gid 10001 --no-create-home kizuna
COPY --from=build /opt/kizuna /opt/kizuna
USER 10001:10001
EXPOSE 8000 8101 8102 8103
ENTRYPOINT ["python", "-m"]
CMD ["services.gateway"]
