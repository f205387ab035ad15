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
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # made only when needed: setdefault would make one every time
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="agent-portal-metrics-")


def _portal_of(worker):
    app = getattr(worker, "wsgi", None)
    return getattr(app, "extensions", {}).get("agent_portal") if app is not None else None


def shutdown_margin(graceful: float) -> float:
    """Return how long before the master's deadline the worker ends its own streams: time for
    gunicorn's one-second loop to notice, and for the ledger and trace exporters to flush."""
    return min(max(3.0, graceful * 0.25), graceful * 0.6)


def post_worker_init(worker):
    """On SIGTERM (``docker stop``, systemd, a reload), stop taking requests as gunicorn does, and
    end the streams still open shortly before the master's ``graceful_timeout`` would kill the
    worker, so each is answered with an error event and recorded, and the flush has time."""
    import signal
    import threading
    import time

    portal = _portal_of(worker)
    if portal is None:
        return
    graceful = float(worker.cfg.graceful_timeout)

    def end_streams_in_time():
        time.sleep(max(0.0, graceful - shutdown_margin(graceful)))
        ended = portal.end_streams()
        if ended:
            worker.log.warning("agent-portal: ended %d open streams before the shutdown deadline", ended)

    def on_term(sig, frame):
        worker.handle_exit(sig, frame)
        if "gevent" in type(worker).__module__:
            import gevent  # a signal handler runs in gevent's hub: it may spawn, never block

            gevent.spawn(end_streams_in_time)
        else:
            threading.Thread(target=end_streams_in_time, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)


def forget_start_directory() -> None:
    """Take the directory ``serve`` was started in off the import path (``python -m`` and
    gunicorn's ``chdir`` both put it first): a stray ``limits.py`` or ``redis.py`` beside the
    operator must not shadow a library the portal imports. Plugins are installed packages."""
    import sys

    here = os.getcwd()
    sys.path[:] = [p for p in sys.path if p not in ("", ".") and os.path.abspath(p) != here]


def post_fork(server, worker):
    """Ctrl-C (SIGINT to every process) and the master's quick stop (SIGQUIT) end the worker's
    loop and its open streams (each with an error event), instead of gunicorn's ``sys.exit``
    inside gevent's hub, which prints a SystemExit traceback per greenlet. Set before the worker
    installs its signal handlers, so a Ctrl-C while it still boots is quiet too. The worker
    then imports the app: the start directory is off its import path first."""
    import threading

    forget_start_directory()

    def quit_quietly(sig, frame):
        worker.alive = False
        portal = _portal_of(worker)
        if portal is None:
            return
        if "gevent" in type(worker).__module__:
            import gevent  # a signal handler runs in gevent's hub: it may spawn, never block

            gevent.spawn(portal.end_streams)
        else:
            threading.Thread(target=portal.end_streams, daemon=True).start()

    worker.handle_quit = quit_quietly


def worker_exit(server, worker):
    """Flush the worker's queued records (ledger, traces) before it goes."""
    portal = _portal_of(worker)
    if portal is not None:
        portal.shutdown()


def child_exit(server, worker):
    """Drop a dead worker's live gauges from the summed metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
