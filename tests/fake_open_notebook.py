"""A local stand-in for Open Notebook 1.14.x, following ../shared/CONTRACTS.md ("Open Notebook").

In memory: notebooks, sources (multipart `POST /api/sources` and `POST /api/sources/json`),
notes, text search across everything (Open Notebook has no users and no per-notebook search),
chat sessions with a notebook's context, and the password check (401 `{"detail"}`). Failures on
purpose: ``state["down"]`` answers 503, ``state["slow"]`` waits that many seconds,
``state["garbage"]`` answers HTML with a 200.
"""
from __future__ import annotations

import json
import time
import uuid
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qs, urlsplit

from fake_http import JSONHandler, serve


def _id(table: str) -> str:
    return f"{table}:{uuid.uuid4().hex[:20]}"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


class Handler(JSONHandler):
    # --- plumbing -------------------------------------------------------------------------------
    def _body(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        kind = self.headers.get("Content-Type", "")
        if kind.startswith("multipart/form-data"):
            message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + kind.encode() + b"\r\n\r\n" + raw)
            fields, files = {}, {}
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if part.get_filename():
                    files[name] = (part.get_filename(), part.get_payload(decode=True))
                else:
                    fields[name] = part.get_payload(decode=True).decode()
            return fields, files
        return (json.loads(raw) if raw else {}), {}

    def _route(self, method: str):
        state = self.server.state
        self.state = state
        url = urlsplit(self.path)
        path, query = url.path, {k: v[0] for k, v in parse_qs(url.query).items()}
        state["calls"].append((method, path))
        if state["down"]:
            return self.reply(503, {"detail": "Service unavailable"})
        if path == "/health":
            return self.reply(200, {"status": "healthy"})
        if state["password"]:
            auth = self.headers.get("Authorization")
            if not auth:
                return self.reply(401, {"detail": "Missing authorization header"})
            if auth != f"Bearer {state['password']}":
                return self.reply(401, {"detail": "Invalid password"})
        if state["slow"]:
            time.sleep(state["slow"])
        if state["garbage"]:
            return self.reply(200, b"<html>maintenance</html>", "text/html")
        parts = path.strip("/").split("/")
        if parts[0] != "api":
            return self.reply(404, {"detail": "Not Found"})
        handler = getattr(self, f"_{parts[1].replace('-', '_')}", None) if len(parts) > 1 else None
        if handler is None:
            return self.reply(404, {"detail": "Not Found"})
        return handler(method, parts[2:], query)

    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def do_PUT(self):
        self._route("PUT")

    def do_DELETE(self):
        self._route("DELETE")

    # --- notebooks ------------------------------------------------------------------------------
    def _notebook_view(self, notebook):
        sources = [s for s in self.state["sources"].values() if notebook["id"] in s["notebooks"]]
        notes = [n for n in self.state["notes"].values() if n["notebook_id"] == notebook["id"]]
        return {**notebook, "source_count": len(sources), "note_count": len(notes)}

    def _notebooks(self, method, rest, query):
        notebooks = self.state["notebooks"]
        if not rest:
            if method == "GET":
                return self.reply(200, [self._notebook_view(n) for n in notebooks.values()])
            body, _ = self._body()
            if not isinstance(body.get("name"), str):
                return self.reply(422, {"detail": [{"loc": ["body", "name"], "msg": "Field required"}]})
            notebook = {"id": _id("notebook"), "name": body["name"], "description": body.get("description", ""),
                        "archived": False, "created": _now(), "updated": _now()}
            notebooks[notebook["id"]] = notebook
            return self.reply(200, self._notebook_view(notebook))
        notebook = notebooks.get(rest[0])
        if notebook is None:
            return self.reply(404, {"detail": "Notebook not found"})
        if len(rest) == 3 and rest[1] == "sources":
            source = self.state["sources"].get(rest[2])
            if source is None:
                return self.reply(404, {"detail": "Source not found"})
            if method == "POST":
                source["notebooks"].append(notebook["id"])
            else:
                source["notebooks"] = [n for n in source["notebooks"] if n != notebook["id"]]
            return self.reply(200, {"message": "ok"})
        if method == "GET":
            return self.reply(200, self._notebook_view(notebook))
        if method == "PUT":
            body, _ = self._body()
            notebook.update({k: v for k, v in body.items() if k in ("name", "description", "archived")})
            return self.reply(200, self._notebook_view(notebook))
        del notebooks[notebook["id"]]
        for note in [n for n in self.state["notes"].values() if n["notebook_id"] == notebook["id"]]:
            del self.state["notes"][note["id"]]
        return self.reply(200, {"message": "Notebook deleted successfully", "deleted_notes": 0,
                                "deleted_sources": 0, "unlinked_sources": 0})

    # --- sources --------------------------------------------------------------------------------
    def _source_view(self, source, full=True):
        view = {k: v for k, v in source.items() if full or k != "full_text"}
        return {**view, "embedded": False, "embedded_chunks": 0, "created": source["created"],
                "updated": source["created"]}

    def _sources(self, method, rest, query):
        sources = self.state["sources"]
        if not rest or rest == ["json"]:
            if method == "GET":
                listed = [s for s in sources.values()
                          if not query.get("notebook_id") or query["notebook_id"] in s["notebooks"]]
                return self.reply(200, [self._source_view(s, full=False) for s in listed])
            body, files = self._body()
            notebooks = body.get("notebooks") or []
            if isinstance(notebooks, str):
                notebooks = json.loads(notebooks)
            kind = body.get("type")
            if kind == "link" and body.get("url"):
                text, title = f"Page at {body['url']}", body.get("title") or body["url"]
            elif kind == "text" and body.get("content"):
                text, title = body["content"], body.get("title") or body["content"][:30]
            elif kind == "upload" and "file" in files:
                text, title = files["file"][1].decode("utf-8", "replace"), body.get("title") or files["file"][0]
            else:
                return self.reply(400, {"detail": f"Invalid source: type {kind!r} needs its url, content or file"})
            source = {"id": _id("source"), "title": title, "full_text": text, "topics": [], "asset": None,
                      "notebooks": list(notebooks), "status": "completed", "created": _now()}
            sources[source["id"]] = source
            return self.reply(200, self._source_view(source))
        source = sources.get(rest[0])
        if source is None:
            return self.reply(404, {"detail": "Source not found"})
        if rest[1:] == ["status"]:
            return self.reply(200, {"status": source["status"], "message": "Source processing completed",
                                    "processing_info": None, "command_id": None})
        if method == "GET":
            return self.reply(200, self._source_view(source))
        if method == "PUT":
            body, _ = self._body()
            source.update({k: v for k, v in body.items() if k in ("title", "topics")})
            return self.reply(200, self._source_view(source))
        del sources[source["id"]]
        return self.reply(200, {"message": "Source deleted successfully"})

    # --- notes ----------------------------------------------------------------------------------
    def _notes(self, method, rest, query):
        notes = self.state["notes"]
        if not rest:
            if method == "GET":
                return self.reply(200, [n for n in notes.values()
                                        if not query.get("notebook_id") or n["notebook_id"] == query["notebook_id"]])
            body, _ = self._body()
            if not isinstance(body.get("content"), str):
                return self.reply(422, {"detail": [{"loc": ["body", "content"], "msg": "Field required"}]})
            note = {"id": _id("note"), "title": body.get("title"), "content": body["content"],
                    "note_type": body.get("note_type") or "human", "notebook_id": body.get("notebook_id"),
                    "created": _now(), "updated": _now()}
            notes[note["id"]] = note
            return self.reply(200, note)
        note = notes.get(rest[0])
        if note is None:
            return self.reply(404, {"detail": "Note not found"})
        if method == "GET":
            return self.reply(200, note)
        if method == "PUT":
            body, _ = self._body()
            note.update({k: v for k, v in body.items() if k in ("title", "content", "note_type")})
            return self.reply(200, note)
        del notes[note["id"]]
        return self.reply(200, {"message": "Note deleted successfully"})

    # --- search across everything, as Open Notebook does ----------------------------------------
    def _search(self, method, rest, query):
        body, _ = self._body()
        if rest:
            return self.reply(404, {"detail": "Not Found (ask is not part of this stand-in)"})
        if not body.get("query"):
            return self.reply(400, {"detail": "Search keyword cannot be empty"})
        if body.get("type") == "vector":
            return self.reply(400, {"detail": "Vector search requires an embedding model. "
                                              "Please configure one in the Models section."})
        word = body["query"].lower()
        results = []
        if body.get("search_sources", True):
            results += [{"id": s["id"], "parent_id": s["id"], "title": s["title"], "content": s["full_text"][:200],
                         "relevance": 1.0} for s in self.state["sources"].values() if word in s["full_text"].lower()]
        if body.get("search_notes", True):
            results += [{"id": n["id"], "parent_id": n["id"], "title": n["title"], "content": n["content"][:200],
                         "relevance": 0.9} for n in self.state["notes"].values() if word in n["content"].lower()]
        results = results[:int(body.get("limit", 100))]
        return self.reply(200, {"results": results, "total_count": len(results), "search_type": "text"})

    # --- chat: sessions, a notebook's context, one answer -----------------------------------------
    def _chat(self, method, rest, query):
        sessions = self.state["sessions"]
        body, _ = self._body()
        if rest == ["sessions"] and method == "POST":
            if body.get("notebook_id") not in self.state["notebooks"]:
                return self.reply(404, {"detail": "Notebook not found"})
            session = {"id": _id("chat_session"), "title": body.get("title") or "Chat", "notebook_id": body["notebook_id"],
                       "created": _now(), "updated": _now(), "message_count": 0, "messages": []}
            sessions[session["id"]] = session
            return self.reply(200, {k: v for k, v in session.items() if k != "messages"})
        if rest == ["context"]:
            notebook = body.get("notebook_id")
            if notebook not in self.state["notebooks"]:
                return self.reply(404, {"detail": "Notebook not found"})
            sources = [{"id": s["id"], "title": s["title"], "content": s["full_text"][:500]}
                       for s in self.state["sources"].values() if notebook in s["notebooks"]]
            notes = [{"id": n["id"], "title": n["title"], "content": n["content"]}
                     for n in self.state["notes"].values() if n["notebook_id"] == notebook]
            text = json.dumps(sources) + json.dumps(notes)
            return self.reply(200, {"context": {"sources": sources, "notes": notes},
                                    "token_count": len(text) // 4, "char_count": len(text)})
        if rest == ["execute"]:
            session = sessions.get(body.get("session_id"))
            if session is None:
                return self.reply(404, {"detail": "Session not found"})
            context = body.get("context") or {}
            titles = sorted(item["title"] for kind in ("sources", "notes") for item in context.get(kind, []))
            if self.state["fail_answers"]:
                return self.reply(500, {"detail": "Error executing chat: the model provider failed"})
            answer = f"From {len(titles)} items ({'; '.join(titles)}): the answer to {body.get('message')!r}."
            session["messages"] += [{"id": _id("msg"), "type": "human", "content": body.get("message"), "timestamp": None},
                                    {"id": _id("msg"), "type": "ai", "content": answer, "timestamp": None}]
            return self.reply(200, {"session_id": session["id"], "messages": session["messages"]})
        return self.reply(404, {"detail": "Not Found"})


class FakeOpenNotebook:
    def __init__(self, password: str | None = "notebook-password-4821"):
        self.server, self.url = serve(Handler)
        self.server.state = {"password": password, "down": False, "slow": 0, "garbage": False,
                             "fail_answers": False, "notebooks": {}, "sources": {}, "notes": {},
                             "sessions": {}, "calls": []}

    @property
    def state(self) -> dict:
        return self.server.state

    def stop(self):
        self.server.shutdown()
