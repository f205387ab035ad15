"""Refusing secrets that everyone knows: the placeholders the project ships, and obviously weak values.

A portal that boots with ``.env.example``'s ``PORTAL_SECRET_KEY`` signs tokens anyone can forge,
so every secret-named setting is checked at startup and by ``check-config``.
"""
from __future__ import annotations

import re
import unicodedata

# Every value shipped in .env.example, the README and the config examples, and the defaults
# other projects' docs made famous. tests/core/test_secrets.py keeps this list in step with the files.
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
MIN_LENGTH = 16
MIN_DISTINCT = 8
# every run of separators (ASCII and Unicode dashes, dots, spaces...) reads as one "-"
_SEPARATORS = re.compile(r"[\s._\-\u2010-\u2015\u2212\u30fb~+/\\:|,]+")
_LOOK_ALIKES = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s",
                              "!": "i", "|": "i"})
_KEYBOARD_ROWS = ("1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm")


def normal_form(value: str) -> str:
    """Return ``value`` as a placeholder check reads it: compatibility characters folded
    (NFKC), lower case, any run of separators one ``-``, look-alike digits and signs as the
    letters they stand for (``t0p-s3cr3t`` reads ``top-secret``)."""
    text = _SEPARATORS.sub("-", unicodedata.normalize("NFKC", value).lower()).strip("-")
    return text.translate(_LOOK_ALIKES)


_NORMAL_PLACEHOLDERS = frozenset(normal_form(p) for p in KNOWN_PLACEHOLDERS)
_LONG_PLACEHOLDERS = sorted((p for p in _NORMAL_PLACEHOLDERS if len(p) >= 6), key=len, reverse=True)


def _mostly_repeated(value: str) -> bool:
    """Return True when one piece, repeated at least three times, makes half of ``value``."""
    text = value[:128]
    n = len(text)
    for size in range(1, n // 3 + 1):
        for start in range(0, n - size + 1):
            piece = text[start:start + size]
            count = text.count(piece)
            if count >= 3 and count * size * 2 >= n:
                return True
    return False


def _mostly_sequential(value: str) -> bool:
    """Return True when runs of four or more consecutive characters (``1234``, ``abcd``,
    ``dcba``, a keyboard row such as ``qwer``) make half of ``value``."""
    text = value.lower()
    covered = [False] * len(text)
    for start in range(len(text) - 3):
        window = text[start:start + 4]
        steps = {ord(b) - ord(a) for a, b in zip(window, window[1:])}
        if steps in ({1}, {-1}) or any(window in row or window[::-1] in row for row in _KEYBOARD_ROWS):
            covered[start:start + 4] = [True] * 4
    return sum(covered) * 2 >= len(text)


def weakness(value: str) -> str | None:
    """Return why ``value`` must not be used as a secret (one that verifies callers or that an
    upstream checks), or None when nothing is known against it: a published placeholder or
    well-known default (also with other separators, look-alike characters or a few characters
    added), shorter than ``MIN_LENGTH``, fewer than ``MIN_DISTINCT`` different characters, or
    mostly one piece repeated or consecutive characters."""
    normal = normal_form(value)
    if value.strip().lower() in KNOWN_PLACEHOLDERS or normal in _NORMAL_PLACEHOLDERS:
        return "is a placeholder published with Agent Portal or a well-known default"
    if _PLACEHOLDER.search(value) or _PLACEHOLDER.search(normal):
        return "looks like a placeholder (it says so)"
    for known in _LONG_PLACEHOLDERS:
        if known in normal and len(normal) - len(known) < 8:
            return "is a well-known default with a few characters added"
    if len(value) < MIN_LENGTH:
        return f"is shorter than {MIN_LENGTH} characters"
    if len(set(value)) < MIN_DISTINCT:
        return f"has fewer than {MIN_DISTINCT} different characters"
    if _mostly_repeated(value):
        return "is mostly one piece repeated"
    if _mostly_sequential(value):
        return "is mostly consecutive characters (1234, abcd, qwerty)"
    return None
