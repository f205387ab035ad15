"""gunicorn config for ``bench/stages.py``: the portal's own settings, plus stage timers in the
worker. Loaded by path, like the portal's: the master must not import the package (gevent)."""
import json
import os
import sys
from pathlib import Path

_PORTAL_CONF = Path(__file__).resolve().parent.parent / "core" / "gunicorn_conf.py"
exec(compile(_PORTAL_CONF.read_text(), str(_PORTAL_CONF), "exec"))  # noqa: S102 - the portal's own settings

_portal_post_worker_init = globals()["post_worker_init"]  # defined by the portal's settings
_portal_worker_exit = globals()["worker_exit"]


def post_worker_init(worker):  # noqa: F811
    """Time every stage inside this worker (``stages.install``), then the portal's own hook."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from stages import BODY_CHECK, install

    _portal_post_worker_init(worker)
    samples, timed = install()
    portal = worker.wsgi.extensions["agent_portal"]
    for endpoint, check in list(portal.body_checks.items()):
        portal.body_checks[endpoint] = timed(BODY_CHECK, check)
    worker._stage_samples = samples


def worker_exit(server, worker):  # noqa: F811
    """Write the samples where ``stages.py`` reads them, then the portal's own hook."""
    samples = getattr(worker, "_stage_samples", None)
    if samples is not None:
        Path(os.environ["PORTAL_STAGES_OUT"]).write_text(json.dumps(samples))
    _portal_worker_exit(server, worker)
