# One image for all four services: `python -m services.<name>` picks the service.
# Build stage: compilers and pip live here only.
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends build-essential && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY libs ./libs
COPY services ./services
# Dependencies are pinned in pyproject.toml; the venv is copied whole into the runtime stage.
RUN python -m venv /opt/kizuna && /opt/kizuna/bin/pip install --upgrade pip && /opt/kizuna/bin/pip install .

# Runtime stage: no build tools, a non-root user.
FROM python:3.11-slim-bookworm AS runtime
ENV PATH=/opt/kizuna/bin:$PATH PYTHONUNBUFFERED=1 KIZUNA_HTTP_HOST=0.0.0.0
RUN groupadd --system kizuna && useradd --system --gid kizuna --no-create-home kizuna
COPY --from=build /opt/kizuna /opt/kizuna
USER kizuna
EXPOSE 8000 8101 8102 8103
ENTRYPOINT ["python", "-m"]
CMD ["services.gateway"]
