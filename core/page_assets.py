"""What a web page loads: the scripts, stylesheets and preloaded fonts its HTML names, and the
fonts and images a stylesheet names, resolved as a browser resolves them. The embed proxy uses it
to tell a UI that can live under ``/embed/<name>/`` from one that only works at a site's root."""
from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

# a page's head is what matters; a page larger than this is read only this far
MAX_PAGE_BYTES = 1 << 20
_CSS_URL = re.compile(r"""url\(\s*(['"]?)([^'")\s]+)\1\s*\)""")
# what a framed page itself loads; icons and manifests are read for top-level pages only
_LINK_RELS = {"stylesheet", "preload", "modulepreload"}


class _AssetParser(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self.base: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = {k.lower(): (v or "") for k, v in attrs}
        if tag == "base" and attrs.get("href") and self.base is None:
            self.base = attrs["href"]
        elif tag == "script" and attrs.get("src"):
            self.found.append(attrs["src"])
        elif tag == "link" and attrs.get("href") and _LINK_RELS & set(attrs.get("rel", "").lower().split()):
            self.found.append(attrs["href"])


def page_assets(html: str, page_url: str) -> list[str]:
    """Return the URLs of the scripts, stylesheets and preloaded files (fonts) ``html`` names,
    each resolved against ``page_url`` (and a ``<base href>``) as a browser resolves it, in order,
    without repeats. Inline scripts and ``data:`` URLs are left out."""
    parser = _AssetParser()
    parser.feed(html[:MAX_PAGE_BYTES])
    base = urljoin(page_url, parser.base) if parser.base else page_url
    return _resolved(parser.found, base)


def stylesheet_assets(css: str, sheet_url: str) -> list[str]:
    """Return the URLs a stylesheet's ``url(...)`` names (fonts, images), resolved against it."""
    return _resolved([m.group(2) for m in _CSS_URL.finditer(css[:MAX_PAGE_BYTES])], sheet_url)


def _resolved(refs, base) -> list[str]:
    out = []
    for ref in refs:
        ref = ref.strip()
        if not ref or ref.startswith(("data:", "blob:", "#", "javascript:")):
            continue
        url = urljoin(base, ref)
        if url not in out:
            out.append(url)
    return out


def outside_prefix(urls, origin: str, prefix: str) -> list[str]:
    """Return the paths of ``urls`` on ``origin`` (the portal's, as the browser sees it) that are
    not under ``prefix``: what a UI framed at ``prefix`` would ask of the portal's root and not
    get. URLs on other hosts (a CDN) are the browser's business, not listed."""
    home = urlsplit(origin)
    prefix = prefix.rstrip("/") + "/"
    out = []
    for url in urls:
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc) != (home.scheme, home.netloc):
            continue
        if not parts.path.startswith(prefix):
            out.append(parts.path)
    return out
