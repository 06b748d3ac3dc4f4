"""A real ``guard worker`` whose PII layer has a bug: it raises on any text containing
``$BUG_TRIGGER`` (``guard.testing.BuggyScanner``, whose exception quotes the text). Everything else
is the worker as shipped."""

import os
import sys

from guard import assemble
from guard.testing import BuggyScanner
from streams.app import main

_fast_scanners = assemble.fast_scanners


def _buggy_fast_scanners(policy_dir):  # type: ignore[no-untyped-def]
    scanners = _fast_scanners(policy_dir)
    return {**scanners, "pii": BuggyScanner(scanners["pii"], os.environ["BUG_TRIGGER"])}


assemble.fast_scanners = _buggy_fast_scanners

if __name__ == "__main__":
    sys.exit(main())
