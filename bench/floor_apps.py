"""The least a Python gateway pays here: apps that answer a chat call with a fixed body at once,
served as the portal is (``bench/stages.py`` measures them beside the portal).

- ``raw_app``: a bare WSGI callable (what a raw dispatch in front of Flask would cost at best);
- ``flask_app``: Flask with one before-request hook (what Flask's request cycle adds).
"""
from flask import Flask, g, request

ANSWER = b'{"id": "floor", "object": "chat.completion", "choices": []}'


def raw_app(environ, start_response):
    """Read the body, answer the fixed completion."""
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(ANSWER)))])
    return [ANSWER]


flask_app = Flask("floor")


@flask_app.before_request
def _request_id():
    g.request_id = request.headers.get("X-Request-ID")


@flask_app.get("/")
def ready():
    return "ok"


@flask_app.post("/v1/chat/completions")
def chat():
    request.get_data()
    return flask_app.response_class(ANSWER, mimetype="application/json")
