"""The headers every HTML page the portal serves carries (the dashboard, /docs): its own scripts
and styles only, never framed by another site, no type sniffing, no referrer."""
from __future__ import annotations


def page_headers(inline_styles: bool = False, frame_origins=()) -> dict:
    """Return the security headers of a page; ``inline_styles`` for a page whose bundled
    library sets style attributes (Swagger UI); ``frame_origins`` the other origins it may frame
    (admin UIs on hosts of their own)."""
    styles = "'self' 'unsafe-inline'" if inline_styles else "'self'"
    frames = " ".join(["'self'", *sorted(set(frame_origins))])
    return {
        "Content-Security-Policy": "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
                                   f"style-src {styles}; script-src 'self'; frame-src {frames}; "
                                   "frame-ancestors 'self'",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "SAMEORIGIN",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }
