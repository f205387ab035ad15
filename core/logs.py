"""JSON-lines logging with the request id on every line."""
from __future__ import annotations

import logging
import sys

from flask import g, has_request_context
from pythonjsonlogger.orjson import OrjsonFormatter

_MARK = "_agent_portal_handler"


class CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each line (test runners swap it)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


class RequestIdFilter(logging.Filter):
    """Add ``request_id`` to every record logged inside a request (None outside one), unless the
    line names its own (``extra={"request_id": ...}``, as the call log written off the request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = g.get("request_id") if has_request_context() else None
        return True


def configure_logging(level: str = "INFO") -> None:
    """Send the ``agent_portal`` loggers to stderr as JSON lines; safe to call once per app."""
    logger = logging.getLogger("agent_portal")
    logger.setLevel(level)
    if any(getattr(h, _MARK, False) for h in logger.handlers):
        return
    handler = CurrentStderrHandler()
    handler.setFormatter(OrjsonFormatter(  # orjson: a line in a third of the time
        "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
        rename_fields={"levelname": "level", "asctime": "time", "name": "logger"},
    ))
    handler.addFilter(RequestIdFilter())
    setattr(handler, _MARK, True)
    logger.addHandler(handler)
    logger.propagate = False
