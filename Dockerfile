# cfl-graph: the Centralised Firmware Library service.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --system --create-home --uid 10001 cfl \
    && mkdir -p /data \
    && chown cfl:cfl /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY cfl_graph ./cfl_graph
COPY loaders ./loaders
COPY cpl_sync ./cpl_sync
RUN pip install . && rm -rf /root/.cache

USER cfl
ENV CFL_DATABASE_URL=sqlite:////data/cfl.sqlite3 \
    CFL_BLOB_DIR=/data/blobs \
    CFL_WORK_DIR=/data/work
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]

CMD ["sh", "-c", "cfl-graph db upgrade && exec cfl-graph serve --host 0.0.0.0 --port 8000"]
