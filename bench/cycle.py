"""The exec driver cycle (start + wait + release of ``/bin/true``) of the native driver, beside
``unshare`` + ``chroot``: ``moorage bench exec --drivers native`` (``-n N`` is ``--cycles N``).

    .venv/bin/python bench/cycle.py [-n 100] [--api-cycles 0]
"""

import sys

from moorage.api.cli.main import main


def exec_bench(driver: str) -> None:
    args = ["--cycles" if a == "-n" else a for a in sys.argv[1:]]
    sys.argv = ["moorage", "bench", "exec", "--drivers", driver, *args]
    sys.exit(main())


if __name__ == "__main__":
    exec_bench("native")
