"""Backends that speak another protocol, read as OpenAI's chat stream.

A backend's ``send_chat`` (see :class:`agent_portal.upstream.OpenAIUpstream`) must answer in
OpenAI's format, because chat relays, counts and records OpenAI chunks. A backend whose server
streams something else wraps the server's response in a subclass of :class:`OpenAIStreamAdapter`,
which turns the server's events into OpenAI SSE bytes as they arrive.
"""
from __future__ import annotations

import json
import time

from .sse import close_upstream
from .types import ModelInfo


class PrefixedModels:
    """The models a plugin serves under a prefix of its own (``agent:<graph>``, ``docs:<name>``,
    ``search:<source>``), offered only while its ``expose_as_models`` is on."""

    def __init__(self, prefix: str, plugin: str, exposed: bool):
        self.prefix, self.plugin, self.exposed = prefix, plugin, exposed

    def name_in(self, model: str) -> str | None:
        """Return what follows the prefix in ``model`` (a graph, a collection, a source), or None
        when ``model`` is not one of these models or they are not offered."""
        if not self.exposed or not model.startswith(self.prefix):
            return None
        return model[len(self.prefix):]

    def backends(self, backend) -> list:
        """Return ``[backend]`` while the models are offered (``portal_backends``), else []."""
        return [backend] if self.exposed else []

    def listed(self, names) -> list:
        """Return the :class:`ModelInfo` of each of ``names`` (what follows the prefix), once each,
        for ``portal_models``; [] while the models are not offered."""
        if not self.exposed:
            return []
        return [ModelInfo(id=self.prefix + name, backend=self.plugin, owned_by=self.plugin, portal_name=True)
                for name in dict.fromkeys(names)]


class ProtocolBackend:
    """The chat backend of a plugin whose server speaks another protocol: named ``name``,
    reachable as its ``client`` last found it. Subclasses implement ``model_ids()`` and
    ``send_chat(body, headers, timeout, stream)`` (see :class:`agent_portal.upstream.OpenAIUpstream`)."""

    def __init__(self, name: str, client):
        self.name = self.kind = name
        self.client = client

    @property
    def reachable(self):
        return self.client.reachable

    @property
    def last_error(self):
        return self.client.last_error

    def attribute(self, payload: dict, actor, request_id: str, session_id: str | None) -> None:
        """Put the caller in the OpenAI body the backend translates (``user``)."""
        payload["user"] = actor.id

    def request_headers(self, request_id: str, actor, session_id: str | None = None) -> dict:
        """Return the headers of one call to the server, with the portal's request id."""
        return {"Content-Type": "application/json", "X-Request-ID": request_id}

    def upstream_call_id(self, request_id: str, response) -> str | None:
        """Return the id the server files this call under (None: the stream tells, or nothing)."""
        return None

    def passed_headers(self, response) -> dict:
        """Return the headers of the server's answer the caller gets too (none)."""
        return {}

    def reported_cost(self, response) -> float | None:
        """Return the cost the server's answer headers report (None: they say none)."""
        return None


class OpenAIStreamAdapter:
    """``read1`` returns OpenAI SSE bytes made from the wrapped ``response``'s events; the rest
    (``connection``, ``close``, ``release_conn``) is the response's, so the relay can cut or
    reuse the connection as usual.

    A subclass sets ``separator`` (what ends one server event) and implements
    ``take(events: bytes)`` (complete events: call :meth:`content`, :meth:`fail`) and
    ``finish()`` (the body ended: call :meth:`complete` when the answer is whole, else
    :meth:`fail`).
    """

    separator = b"\n\n"

    def __init__(self, response, model: str, call_id: str = "portal"):
        self.response = response
        self.model = model
        self.call_id = call_id
        self.status, self.headers = 200, {}
        self.created = int(time.time())
        self.buffer = b""
        self.out: list[bytes] = []
        self.finished = False
        self.failure: str | None = None  # why the answer is incomplete, when it is
        self.text: list[str] = []
        self.body_ended = False  # the server's body was read to its end

    # --- the surface the relay and the pool use -----------------------------------------------
    @property
    def connection(self):
        return getattr(self.response, "connection", None)

    def close(self):
        self.response.close()

    def release_conn(self):
        # a connection whose body was not read to its end cannot serve another request
        if self.body_ended:
            self.response.release_conn()
        else:
            close_upstream(self.response)

    def read1(self, amt: int = 65536) -> bytes:
        """Return the next OpenAI SSE bytes (b"" at the end); blocks until there are some."""
        while not self.out:
            if self.finished:
                return b""
            data = self.response.read1(amt)
            if not data:
                self.body_ended = self.finished = True
                self.finish()
                break
            self.buffer = (self.buffer + data).replace(b"\r\n", b"\n")
            cut = self.buffer.rfind(self.separator)
            if cut >= 0:
                cut += len(self.separator)
                complete, self.buffer = self.buffer[:cut], self.buffer[cut:]
                self.take(complete)
        out, self.out = b"".join(self.out), []
        return out

    def read_all(self) -> str:
        """Read the whole answer (a call that is not streamed); returns its text. Check
        ``failure`` afterwards."""
        while self.read1():
            pass
        return "".join(self.text)

    # --- what subclasses call -------------------------------------------------------------------
    def take(self, events: bytes) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError

    def chunk(self, delta: dict | None = None, finish: str | None = None, usage: dict | None = None) -> None:
        """Queue one ``chat.completion.chunk`` (``delta`` None: a usage-only chunk)."""
        data = {"id": f"chatcmpl-{self.call_id}", "object": "chat.completion.chunk", "created": self.created,
                "model": self.model,
                "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if usage is not None:
            data["usage"] = usage
        self.out.append(b"data: " + json.dumps(data).encode() + b"\n\n")

    def content(self, text: str) -> None:
        """Queue a piece of the answer."""
        if text:
            self.text.append(text)
            self.chunk({"content": text})

    def complete(self, usage: tuple | None = None) -> None:
        """Queue the end of a whole answer: the final chunk, the usage when known, ``[DONE]``."""
        self.chunk({}, finish="stop")
        if usage is not None:
            self.chunk(None, usage={"prompt_tokens": usage[0], "completion_tokens": usage[1],
                                    "total_tokens": usage[0] + usage[1]})
        self.out.append(b"data: [DONE]\n\n")
        self.finished = True

    def fail(self, message: str, code: str) -> None:
        """Queue an OpenAI error object: the answer is incomplete, the stream ends."""
        error = {"error": {"message": message, "type": "upstream_error", "code": code}}
        self.out.append(b"data: " + json.dumps(error).encode() + b"\n\n")
        self.failure, self.finished = message, True


class OpenAIAnswer:
    """A whole answer as a non-streamed OpenAI chat completion (what ``send_chat`` returns for
    a call that is not streamed)."""

    def __init__(self, model: str, text: str, call_id: str = "portal", usage: tuple | None = None):
        self.status, self.headers = 200, {}
        completion = {"id": f"chatcmpl-{call_id}", "object": "chat.completion", "created": int(time.time()),
                      "model": model, "choices": [{"index": 0, "finish_reason": "stop",
                                                   "message": {"role": "assistant", "content": text}}]}
        if usage is not None:
            completion["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1],
                                   "total_tokens": usage[0] + usage[1]}
        self.data = json.dumps(completion).encode()

    def close(self):
        pass

    def release_conn(self):
        pass
