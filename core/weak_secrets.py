"""Refusing secrets that everyone knows: the placeholders the project ships, and obviously weak values.

A portal that boots with ``.env.example``'s ``PORTAL_SECRET_KEY`` signs tokens anyone can forge,
so every secret-named setting is checked at startup and by ``check-config``.
"""
from __future__ import annotations

import re

# Every value shipped in .env.example, the README and the config examples, and the defaults
# other projects' docs made famous. tests/test_secrets.py keeps this list in step with the files.
KNOWN_PLACEHOLDERS = frozenset({
    "replace-with-a-long-random-secret", "replace-with-a-scrape-token-0000",
    "replace-with-the-shared-webui-secret", "replace-with-a-forward-header-secret",
    "sk-replace-with-random-hex", "replace-with-a-database-password", "pk-lf-replace-me",
    "sk-lf-replace-me", "replace-with-a-salt", "0" * 64, "replace-with-a-nextauth-secret",
    "replace-with-an-admin-password", "replace-with-a-clickhouse-password",
    "replace-with-a-minio-password", "replace-with-a-notebook-password",
    "replace-with-a-notebook-encryption-key", "replace-with-a-surrealdb-password",
    "replace-with-a-qdrant-api-key", "replace-with-a-helicone-auth-secret",
    "replace-with-a-helicone-storage-secret", "replace-with-an-openai-key", "sk-1234", "sk-12345", "changeme", "change-me", "secret",
    "password", "admin", "t0p-s3cr3t", "your-secret-key", "mysecret", "supersecret",
})
_PLACEHOLDER = re.compile(r"replace[-_ ]?(with|me)|change[-_ ]?me|your[-_ ](secret|key|token|password)"
                          r"|placeholder|<[^<>]+>|\bdummy\b|\binsecure\b|not[-_ ]a[-_ ]secret", re.I)
MIN_DISTINCT = 6


def weakness(value: str, verifies: bool = True) -> str | None:
    """Return why ``value`` must not be used as a secret, or None when nothing is known against it.

    ``verifies``: the portal checks callers' credentials with it (a signing key, a scrape token),
    so a weak value is refused too; keys for upstreams are refused only when they are placeholders.
    """
    if value.strip().lower() in KNOWN_PLACEHOLDERS:
        return "is a placeholder published with Agent Portal or a well-known default"
    if _PLACEHOLDER.search(value):
        return "looks like a placeholder (it says so)"
    if verifies and len(set(value)) < MIN_DISTINCT:
        return f"has fewer than {MIN_DISTINCT} different characters"
    return None
