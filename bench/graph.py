"""Graph driver benchmarks: ``moorage bench graph`` (this script passes its arguments on).

    .venv/bin/python bench/graph.py [--drivers vfs,overlay,btrfs] [--size-mb 64] [--files 5000] [--repeat 5]
"""

import sys

from moorage.api.cli.main import main

if __name__ == "__main__":
    sys.argv = ["moorage", "bench", "graph", *sys.argv[1:]]
    sys.exit(main())
