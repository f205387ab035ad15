"""The bodies the documents routes take and the answers they give, as JSON Schema: the core
checks every body against its route's schema before the view runs, and /openapi.json shows both."""
from __future__ import annotations

from agent_portal.schemas import INTEGER, NULLABLE_STRING, NUMBER, SSE_EVENT, STRING, array, obj
from agent_portal.types import ROLES

_BAD = {"x-error-code": "invalid_request"}
COLLECTION_IDS = {"type": "array", "maxItems": 100, "items": {"type": "string", **_BAD}, **_BAD,
                  "description": "the collections to cover (default: every one the caller may read)"}
TOP_K = {"type": "integer", "minimum": 1, "maximum": 50, **_BAD}

NEW_COLLECTION = {"type": "object", "required": ["name"], "x-error-code": "invalid_json", "properties": {
    "name": {"type": "string", "pattern": "^[^:/]*[^:/\\s][^:/]*$", "maxLength": 200, **_BAD,
             "description": "1 to 200 characters, without : or /"},
    "description": {"type": "string", "maxLength": 10_000, **_BAD}}}

SHARING = {"type": "object", "x-error-code": "invalid_json", "properties": {
    "roles": {"type": "array", "items": {"enum": list(ROLES), **_BAD}, **_BAD},
    "users": {"type": "array", "maxItems": 1000, "items": {"type": "string", "minLength": 1, "maxLength": 200, **_BAD},
              **_BAD},
    "groups": {"type": "array", "maxItems": 1000, "items": {"type": "string", "minLength": 1, "maxLength": 200, **_BAD},
               **_BAD}}}

EMBEDDINGS = {"type": "object", "required": ["input"], "x-error-code": "invalid_json", "properties": {
    "model": {"type": "string", **_BAD},
    "input": {**_BAD, "anyOf": [
        {"type": "string", "minLength": 1, "maxLength": 100_000},
        {"type": "array", "minItems": 1, "maxItems": 2048, "items": {"type": "string", "minLength": 1,
                                                                      "maxLength": 100_000}}]},
    "encoding_format": {"enum": ["float", "base64"], **_BAD}}}


def search_body(max_chars: int) -> dict:
    """Return the schema of ``POST /documents/search``."""
    return {"type": "object", "required": ["query"], "x-error-code": "invalid_json", "properties": {
        "query": {"type": "string", "pattern": "\\S", "maxLength": max_chars, **_BAD},
        "k": TOP_K, "collections": COLLECTION_IDS}}


def ask_body(max_chars: int) -> dict:
    """Return the schema of ``POST /documents/ask``."""
    return {"type": "object", "required": ["question"], "x-error-code": "invalid_json", "properties": {
        "question": {"type": "string", "pattern": "\\S", "maxLength": max_chars, **_BAD},
        "model": {"type": ["string", "null"], **_BAD, "description": "admins only"},
        "stream": {"type": "boolean", **_BAD}, "k": TOP_K, "collections": COLLECTION_IDS}}


COLLECTION = obj("id", "name", "owner", id=STRING, name=STRING, description=STRING, owner=STRING)
FILE = obj("id", "status", id=STRING, name=STRING, status=STRING)
HIT = obj("text", "score", "file_id", text=STRING, score=NUMBER, file_id=STRING, file_name=STRING,
          collection_id=STRING, page={"type": ["integer", "null"]}, heading=NULLABLE_STRING, chunk=INTEGER)
COLLECTIONS_ANSWERS = {"200": obj("collections", collections=array(COLLECTION)), "201": COLLECTION}
SEARCH_ANSWERS = {"200": obj("hits", "took_ms", hits=array(HIT), took_ms=NUMBER)}
ASK_ANSWERS = {"200": {"content": {
    "application/json": {"schema": obj("answer", "sources", answer=STRING, sources=array(HIT))},
    "text/event-stream": {"schema": SSE_EVENT}}}}
EMBEDDINGS_ANSWERS = {"200": obj("object", "data", "model", "usage", object={"const": "list"}, model=STRING,
                                 data=array(obj("object", "index", "embedding", object={"const": "embedding"},
                                                index=INTEGER, embedding={"type": ["array", "string"]})),
                                 usage=obj("prompt_tokens", prompt_tokens=INTEGER, total_tokens=INTEGER))}
