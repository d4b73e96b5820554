"""The exec driver cycle of the ``lxc`` driver: ``moorage bench exec --drivers lxc``
(``-n N`` is ``--cycles N``); ``--drivers native,lxc`` compares the two.

    .venv/bin/python bench/lxc_cycle.py [-n 50]
"""

from cycle import exec_bench  # bench/cycle.py

if __name__ == "__main__":
    exec_bench("lxc")
