# syntax=docker/dockerfile:1
#
# Crowd Monitor image: one image for every process.
#   web (default CMD)  gunicorn + uvicorn workers serving crowd_monitor.asgi (HTTP and WebSockets)
#   detection worker   python manage.py run_detection
#   alert worker       python manage.py run_alerts
# Every setting comes from the environment (see .env.example); nothing secret is baked in.
FROM python:3.11-slim-bookworm

# PyTorch wheel index. requirements.txt pins torch==2.14.1 / torchvision==0.29.1; on PyPI those are the CUDA
# builds, which pull several GB of NVIDIA libraries that a CPU-only detection worker (DETECTION_DEVICE=cpu)
# never uses. By default pip also consults PyTorch's CPU-only index, whose "2.14.1+cpu" wheels satisfy the
# same pins and are preferred (a local version label sorts above the plain release).
#   GPU image:   docker build --build-arg TORCH_INDEX_URL= .            (PyPI only: CUDA wheels)
#   other index: docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu124 .
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1

# OpenCV 4 (opencv-python, pulled in for frame sources and by ultralytics) loads libGL and GLib at import.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

# Unprivileged runtime user, with a writable home for ultralytics' settings and matplotlib's cache.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app --shell /usr/sbin/nologin app

WORKDIR /app

# Dependencies first so code changes reuse this layer.
COPY requirements.txt ./
RUN pip install --no-cache-dir ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} -r requirements.txt

COPY . .

# Static files are collected at build time (served by WhiteNoise). With DEBUG off the settings refuse to load
# without SECRET_KEY, so this one command gets a dummy key that exists only for the build; the running
# container must be given its own SECRET_KEY.
# /app itself (not its contents) belongs to the app user so the detection worker can save model weights that
# ultralytics downloads into the working directory (DETECTION_MODEL=yolov8n.pt); the code stays root-owned.
# /app/var/spool (DETECTION_SPOOL_DIR) is the worker's too: a volume mounted there starts with its ownership.
RUN SECRET_KEY=build-only-not-secret DEBUG=False python manage.py collectstatic --noinput \
    && chmod 0755 docker/entrypoint.sh \
    && mkdir -p /app/var/spool \
    && chown app:app /app /app/var /app/var/spool

USER app
ENV HOME=/home/app \
    YOLO_CONFIG_DIR=/home/app/.config \
    PORT=8000

EXPOSE 8000

# Liveness of the web process (slim has no curl). /healthz is answered before host validation and HTTPS
# redirects (crowd_monitor.middleware), so a plain local request is enough. Worker containers disable this check.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"

# RUN_MIGRATIONS=1 makes the entrypoint apply migrations before starting the command.
ENTRYPOINT ["/app/docker/entrypoint.sh"]
# uvicorn's own uvicorn.workers module is deprecated (0.30+); our worker class (crowd_monitor/asgi_worker.py:
# no per-message WebSocket compression) builds on the uvicorn-worker package's. `sh -c` expands PORT (platforms such as Render set it) and WEB_CONCURRENCY; exec hands gunicorn the
# signals.
CMD ["sh", "-c", "exec gunicorn crowd_monitor.asgi:application -k crowd_monitor.asgi_worker.CrowdMonitorUvicornWorker --bind 0.0.0.0:${PORT:-8000} --workers ${WEB_CONCURRENCY:-2} --access-logfile -"]
