"""``python -m agent_portal.plugins.documents.needed CONFIG``: exit 0 when CONFIG turns the documents
plugin on (its section is there and not ``enabled: false``), 1 otherwise. The run command asks it
before installing the documents stack, which a portal without documents never loads."""
from __future__ import annotations

import sys

import yaml


def documents_on(path: str) -> bool:
    """Return True when the config file at ``path`` turns the documents plugin on."""
    with open(path) as handle:
        config = yaml.safe_load(handle) or {}
    plugins = config.get("plugins") or {}
    if "documents" not in plugins:
        return False
    section = plugins["documents"]
    return not (isinstance(section, dict) and section.get("enabled", True) is False)  # as the portal reads it


if __name__ == "__main__":
    sys.exit(0 if documents_on(sys.argv[1]) else 1)
