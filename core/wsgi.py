"""The WSGI entry point gunicorn loads in each worker: ``agent_portal.wsgi:app``.

The config comes from ``$AGENT_PORTAL_CONFIG``.
"""
from .app import create_app

app = create_app()
