"""Throughput of crosspose side by side with DeepLabCut 3 (same as ``crosspose benchmark``).

Usage: python tools/benchmark.py [--size 256] [--batch 8] [--skip-dlc] [--json out.json] ...
"""

from __future__ import annotations

import sys

from crosspose.benchmark.run import main

if __name__ == "__main__":
    sys.exit(main())
