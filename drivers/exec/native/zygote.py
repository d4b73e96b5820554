"""The native driver's zygote (``python -m``, see ``common.zygote``): it forks each monitor
ahead of time, with the native monitor and the container setup code already imported."""

from __future__ import annotations

from moorage.drivers.exec.common import zygote

from . import monitor

if __name__ == "__main__":
    zygote.main(monitor.main, prefork=True)
