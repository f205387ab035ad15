"""The tests' fake upstream under gevent, as the benchmark's fast local upstream.

``python bench/upstream.py --port 9100``
"""
from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import sys  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from fake_upstream import main  # noqa: E402

if __name__ == "__main__":
    main()
