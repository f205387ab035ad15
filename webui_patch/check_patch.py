"""Check that monitoring.patch applies to Open WebUI 0.12.4's sources and compiles.

The sources come from the published wheel: its built frontend ships source maps whose
``sourcesContent`` holds the Svelte and TypeScript files (and Svelte's own ``version.js``, which
names the Svelte release the build used). This script downloads the wheel (``pip download
open-webui==0.12.4 --no-deps``, cached in ``.cache/``), writes every file the patch touches from the
maps into a scratch git repository, runs ``git apply --check`` and applies it there, then compiles
every patched file with that Svelte release and TypeScript from the npm registry (installed in
``.cache/webui-compile-<version>``, needs ``npm``): a compile error, or a warning the unpatched file
does not have, fails the check.

    python webui_patch/check_patch.py                 # exit 0 when the patch applies and compiles
    python webui_patch/check_patch.py --no-compile    # only git apply --check
    python webui_patch/check_patch.py --extract DIR   # write the recovered sources to DIR
    python webui_patch/check_patch.py --patched DIR   # write them with the patch applied
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


def map_sources(wheel: Path):
    """Yield ``(source path, text)`` for every file the wheel's source maps carry."""
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if not name.endswith(".js.map"):
                continue
            try:
                data = json.loads(archive.read(name))
            except ValueError:
                continue
            for source, content in zip(data.get("sources") or [], data.get("sourcesContent") or []):
                if content is not None:
                    yield source, content


def recover_sources(wheel: Path) -> dict[str, str]:
    """Return ``{"src/...": text}`` for every Open WebUI source the wheel's source maps carry."""
    sources: dict[str, str] = {}
    for source, content in map_sources(wheel):
        match = re.search(r"(?:^|/)(src/.*)$", source)
        if match and "node_modules/" not in source:
            sources.setdefault(match.group(1), content)
    return sources


def svelte_version(wheel: Path) -> str:
    """Return the Svelte release Open WebUI's build used, from Svelte's ``version.js`` in the maps."""
    for source, content in map_sources(wheel):
        if source.endswith("svelte/src/version.js"):
            match = re.search(r"VERSION = '([0-9][^']*)'", content)
            if match:
                return match.group(1)
    raise SystemExit(f"the {VERSION} wheel's source maps do not name a Svelte release")


def compilers(version: str) -> Path:
    """Return a ``node_modules`` holding svelte@``version`` and TypeScript, installing them once."""
    folder = CACHE / f"webui-compile-{version}"
    modules = folder / "node_modules"
    if not (modules / "svelte" / "package.json").exists() or not (modules / "typescript").exists():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", str(folder),
                        f"svelte@{version}", "typescript@5"], check=True)
    return modules


def compile_report(modules: Path, root: Path, files: list[str]) -> dict:
    """Return ``{file: {errors, warnings}}`` from compiling ``files`` under ``root``."""
    result = subprocess.run(["node", str(HERE / "compile_check.mjs"), str(modules), str(root), *files],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)["files"]


def compile_problems(modules: Path, original: Path, patched: Path, modified: list[str], created: list[str]) -> list[str]:
    """Return every compile error of the patched files and every warning the patch added."""
    wanted = [f for f in modified + created if f.endswith((".svelte", ".ts"))]
    after = compile_report(modules, patched, wanted)
    before = compile_report(modules, original, [f for f in modified if f in wanted])
    problems = []
    for file, report in after.items():
        problems += [f"{file}: error: {e}" for e in report["errors"]]
        known = {w.split(" ", 1)[0] + w.split(" ", 2)[-1] for w in (before.get(file) or {}).get("warnings", [])}
        problems += [f"{file}: warning: {w}" for w in report["warnings"]
                     if w.split(" ", 1)[0] + w.split(" ", 2)[-1] not in known]
    return problems


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
    parser.add_argument("--patched", help="write them with the patch applied to this folder")
    parser.add_argument("--no-compile", action="store_true", help="only check that the patch applies")
    parser.add_argument("--patch", default=str(PATCH), help="another patch file (the tests break a copy)")
    args = parser.parse_args()
    patch = Path(args.patch).resolve()
    patch_text = patch.read_text()
    modified, created = touched_files(patch_text)
    wheel = wheel_path()
    sources = recover_sources(wheel)
    missing = [path for path in modified if path not in sources]
    if missing:
        print(f"the {VERSION} wheel's source maps do not carry: {', '.join(missing)}", file=sys.stderr)
        return 1
    clashes = [path for path in created if path in sources]
    if clashes:
        print(f"Open WebUI {VERSION} already has: {', '.join(clashes)}", file=sys.stderr)
        return 1
    original = Path(args.extract) if args.extract else Path(tempfile.mkdtemp(prefix="open-webui-src-"))
    for path in modified:
        file = original / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(sources[path])
    if args.extract:
        print(f"wrote {len(modified)} files to {original}")
        return 0
    patched = Path(args.patched) if args.patched else Path(tempfile.mkdtemp(prefix="open-webui-patched-"))
    for path in modified:
        (patched / path).parent.mkdir(parents=True, exist_ok=True)
        (patched / path).write_text(sources[path])
    subprocess.run(["git", "init", "-q", str(patched)], check=True)
    result = subprocess.run(["git", "apply", "--check", "--verbose", str(patch)], cwd=patched,
                            capture_output=True, text=True)
    print(result.stdout + result.stderr)
    if result.returncode != 0:
        print(f"{patch.name} does NOT apply to Open WebUI {VERSION}", file=sys.stderr)
        return 1
    print(f"{patch.name} applies to Open WebUI {VERSION} ({len(modified)} changed, {len(created)} new files)")
    subprocess.run(["git", "apply", str(patch)], cwd=patched, check=True)
    if args.patched:
        print(f"wrote the patched files to {patched}")
    if args.no_compile:
        return 0
    version = svelte_version(wheel)
    problems = compile_problems(compilers(version), original, patched, modified, created)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{patch.name} does NOT compile with Svelte {version}", file=sys.stderr)
        return 1
    print(f"{patch.name} compiles with Svelte {version} and TypeScript: no error, no new warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
