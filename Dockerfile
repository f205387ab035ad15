# Agent Portal: gunicorn with the gevent worker, as a non-root user, with a health check.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    AGENT_PORTAL_CONFIG=/app/config/portal.yaml \
    PORTAL_BIND=0.0.0.0:8080

RUN groupadd --system --gid 10001 portal \
 && useradd --system --uid 10001 --gid portal --home-dir /app --shell /usr/sbin/nologin portal

WORKDIR /app
COPY pyproject.toml setup.cfg README.md ./
COPY core ./core
COPY plugins ./plugins
# the documents extra: parsers, stores and the ONNX embedder (onnxruntime, no torch)
RUN pip install '.[documents]'
COPY config ./config
COPY deploy/gunicorn.conf.py ./deploy/gunicorn.conf.py
RUN mkdir -p /app/data && chown portal:portal /app/data

USER portal
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/ready', timeout=2).status == 200 else 1)"]
CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py", "agent_portal.wsgi:app"]
