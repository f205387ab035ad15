"""gunicorn settings for the portal (``deploy/gunicorn.conf.py`` re-exports them).

gevent worker; one worker per core; keep-alive and timeouts that let long streams live;
a graceful shutdown that lets streams finish up to a bound; no preload (it would import the app
before gevent patches the worker).
"""
import multiprocessing
import os
import tempfile

worker_class = "gevent"
workers = int(os.environ.get("PORTAL_WORKERS") or multiprocessing.cpu_count())
worker_connections = int(os.environ.get("PORTAL_WORKER_CONNECTIONS") or 4000)
bind = os.environ.get("PORTAL_BIND", "127.0.0.1:8080")
keepalive = 75            # longer than common load balancers' idle timeout
timeout = 60              # worker heartbeat; gevent workers beat while streams run
graceful_timeout = int(os.environ.get("PORTAL_GRACEFUL_SECONDS") or 30)
preload_app = False
accesslog = None          # the portal logs calls itself; an access log line per chunk costs
errorlog = "-"
loglevel = os.environ.get("PORTAL_GUNICORN_LOGLEVEL", "warning")
limit_request_line = 8190
limit_request_field_size = 16384  # room for an 8 KB token, not for more

# Metrics from every worker are summed through files in this directory.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="agent-portal-metrics-"))


def worker_exit(server, worker):
    """Flush the worker's queued records (ledger, traces) before it goes."""
    app = getattr(worker, "wsgi", None)
    portal = getattr(app, "extensions", {}).get("agent_portal") if app is not None else None
    if portal is not None:
        portal.shutdown()


def child_exit(server, worker):
    """Drop a dead worker's live gauges from the summed metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
