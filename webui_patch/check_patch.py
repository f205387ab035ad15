"""Check that monitoring.patch applies to Open WebUI 0.12.4's sources.

The sources come from the published wheel: its built frontend ships source maps whose
``sourcesContent`` holds the Svelte and TypeScript files. This script downloads the wheel
(``pip download open-webui==0.12.4 --no-deps``, cached in ``.cache/``), writes every file the patch
touches from the maps into a scratch git repository, and runs ``git apply --check`` there.

    python webui_patch/check_patch.py             # exit 0 when the patch applies
    python webui_patch/check_patch.py --extract DIR   # write the recovered sources to DIR
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

VERSION = "0.12.4"
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PATCH = HERE / "monitoring.patch"
CACHE = ROOT / ".cache"


def wheel_path() -> Path:
    """Return the cached Open WebUI wheel, downloading it once."""
    CACHE.mkdir(exist_ok=True)
    found = sorted(CACHE.glob(f"open_webui-{VERSION}-*.whl"))
    if found:
        return found[0]
    subprocess.run([sys.executable, "-m", "pip", "download", f"open-webui=={VERSION}", "--no-deps",
                    "--quiet", "-d", str(CACHE)], check=True)
    return sorted(CACHE.glob(f"open_webui-{VERSION}-*.whl"))[0]


def recover_sources(wheel: Path) -> dict[str, str]:
    """Return ``{"src/...": text}`` for every source the wheel's source maps carry."""
    sources: dict[str, str] = {}
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if not name.endswith(".js.map"):
                continue
            try:
                data = json.loads(archive.read(name))
            except ValueError:
                continue
            for source, content in zip(data.get("sources") or [], data.get("sourcesContent") or []):
                match = re.search(r"(?:^|/)(src/.*)$", source)
                if match and content is not None:
                    sources.setdefault(match.group(1), content)
    return sources


def touched_files(patch_text: str) -> tuple[list[str], list[str]]:
    """Return (files the patch modifies, files it creates)."""
    modified, created = [], []
    for block in re.split(r"^diff --git ", patch_text, flags=re.M)[1:]:
        path = re.match(r"a/(\S+) b/", block).group(1)
        (created if re.search(r"^new file mode", block, flags=re.M) else modified).append(path)
    return modified, created


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extract", help="write the recovered sources the patch touches to this folder")
    args = parser.parse_args()
    patch_text = PATCH.read_text()
    modified, created = touched_files(patch_text)
    sources = recover_sources(wheel_path())
    missing = [path for path in modified if path not in sources]
    if missing:
        print(f"the {VERSION} wheel's source maps do not carry: {', '.join(missing)}", file=sys.stderr)
        return 1
    clashes = [path for path in created if path in sources]
    if clashes:
        print(f"Open WebUI {VERSION} already has: {', '.join(clashes)}", file=sys.stderr)
        return 1
    target = Path(args.extract) if args.extract else Path(tempfile.mkdtemp(prefix="open-webui-src-"))
    for path in modified:
        file = target / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(sources[path])
    if args.extract:
        print(f"wrote {len(modified)} files to {target}")
        return 0
    subprocess.run(["git", "init", "-q", str(target)], check=True)
    result = subprocess.run(["git", "apply", "--check", "--verbose", str(PATCH)], cwd=target,
                            capture_output=True, text=True)
    print(result.stdout + result.stderr)
    if result.returncode != 0:
        print(f"monitoring.patch does NOT apply to Open WebUI {VERSION}", file=sys.stderr)
        return 1
    print(f"monitoring.patch applies to Open WebUI {VERSION} ({len(modified)} changed, {len(created)} new files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
