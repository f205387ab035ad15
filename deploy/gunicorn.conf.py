"""gunicorn settings for the portal: ``gunicorn -c deploy/gunicorn.conf.py agent_portal.wsgi:app``.

The values live in the package (``agent_portal/gunicorn_conf.py``) so that ``agent-portal serve``
uses the same ones; this file loads that one by path, without importing the package in the
master process (which would import ssl before gevent patches the workers).
"""
import importlib.util
import os

_spec = importlib.util.find_spec("agent_portal")
_path = os.path.join(os.path.dirname(_spec.origin), "gunicorn_conf.py")
with open(_path, encoding="utf-8") as _handle:
    exec(compile(_handle.read(), _path, "exec"))
