"""Checks the fuzz run (tests/core/test_fuzz.py) adds to schemathesis: the portal never answers an
internal error (500), and every JSON error is in the portal's shape (or a proxied service's own
``{"detail"}``, passed on as it came)."""
import schemathesis


@schemathesis.check
def no_internal_error(ctx, response, case):
    if response.status_code == 500:
        raise AssertionError(f"500 from {case.method} {case.path}: {response.text[:300]}")


@schemathesis.check
def errors_in_the_portal_shape(ctx, response, case):
    kind = response.headers.get("Content-Type") or ""
    kind = kind[0] if isinstance(kind, list) else kind
    if response.status_code < 400 or "json" not in kind:
        return
    body = response.json()
    shaped = isinstance(body, dict) and isinstance(body.get("error"), dict) and "message" in body["error"]
    if not shaped and not (isinstance(body, dict) and "detail" in body):
        raise AssertionError(f"{response.status_code} without the error shape: {response.text[:300]}")
