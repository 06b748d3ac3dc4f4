"""``python -m streams worker``: the same as ``guard worker``."""

from __future__ import annotations

import sys

from streams.app import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "worker":
        args = args[1:]
    raise SystemExit(main(args))
