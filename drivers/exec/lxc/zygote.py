"""The lxc driver's zygote (``python -m``, see ``common.zygote``): it loads liblxc once, so that
the launchers find it loaded, and forks a monitor per request. A fresh interpreter per container
would cost more than LXC's whole start (see bench/lxc_cycle.py)."""

from __future__ import annotations

from moorage.drivers.exec.common import zygote
from moorage.drivers.exec.lxc import liblxc, monitor

if __name__ == "__main__":
    try:
        liblxc.load()  # once, before forking
    except OSError:
        pass  # the launcher reports it
    zygote.main(monitor.main, prefork=False)
