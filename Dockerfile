# Transcord on CPU: `docker build -t transcord .`, then `docker compose up -d` (compose.yaml).
# What is where, and the CUDA variant: docs/operating.md#container.
#
# The default model is not in the image: deploy/entrypoint.sh fetches it on the first start into
# the /data/models volume (a minute or two; later starts check it in about a second). The image
# stays about 400 MB smaller and builds without converting a model, an upgraded image keeps the
# model the volume has, and compose.yaml's llama-server serves the same GGUF from that volume.

# -- build: a virtual environment with torch's CPU build and Transcord ----------------------------
FROM python:3.11-slim-bookworm AS build

# torch comes first, from PyTorch's own index: PyPI's Linux torch pulls about 3 GB of CUDA libraries.
# Another index gives another build (docs/operating.md#container has the CUDA one).
ARG TORCH=torch==2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
# The version is pinned, in TORCH's default; hadolint cannot see it through the variable.
# hadolint ignore=DL3013
RUN python -m venv /opt/venv \
    && pip install --no-cache-dir --index-url "$TORCH_INDEX" "$TORCH"

WORKDIR /src
COPY pyproject.toml README.md bot.py ./
COPY app ./app
COPY cogs ./cogs
COPY core ./core
COPY domain ./domain
COPY loopback ./loopback
COPY model_service ./model_service
COPY storage ./storage
# Its dependencies come from pyproject.toml's ranges; the torch above satisfies its own.
RUN pip install --no-cache-dir .

# -- runtime: the environment, bot.py, a user of its own -------------------------------------------
FROM python:3.11-slim-bookworm

# libgomp1: the xllamacpp wheel (llama.cpp) links the system's OpenMP; torch carries its own.
# Not pinned: Debian replaces a package's version in place with each security update, so a pin
# breaks the build at the next one; the base image's tag already fixes the release (bookworm).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

# The bot runs as an unprivileged user; /data (models, SQLite, the Hugging Face cache) is its own,
# and a named volume mounted there starts with this ownership.
RUN groupadd --system --gid 10001 transcord \
    && useradd --system --uid 10001 --gid transcord --create-home --home-dir /home/transcord transcord \
    && mkdir -p /data/models \
    && chown -R transcord:transcord /data

COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY bot.py ./
COPY --chmod=755 deploy/entrypoint.sh /usr/local/bin/transcord-entrypoint

# METRICS_PORT/METRICS_HOST: /metrics, /healthz and /readyz, reachable from outside the container
# (the port is published on the host's loopback only, in compose.yaml).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MODELS_DIR=/data/models \
    DATABASE_PATH=/data/transcord.sqlite3 \
    HF_HOME=/data/huggingface \
    METRICS_PORT=9464 \
    METRICS_HOST=0.0.0.0

USER 10001:10001
VOLUME ["/data"]
EXPOSE 9464

# /healthz answers while the bot's event loop does (the server runs on it). The start period
# covers the first start's model fetch. Python, not curl: the slim image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10m --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + (os.environ.get('METRICS_PORT') or '9464') + '/healthz', timeout=4)"]

ENTRYPOINT ["transcord-entrypoint"]
CMD ["python", "bot.py"]
