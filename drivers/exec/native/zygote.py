"""The native driver's zygote (``python -m``, see ``common.zygote``): it forks each monitor
ahead of time, with the native monitor and the container setup code already imported, and
warmed up (``common.monitor.warm_up``)."""

from __future__ import annotations

from moorage.drivers.exec.common import monitor as common
from moorage.drivers.exec.common import zygote
from moorage.drivers.exec.native import monitor

if __name__ == "__main__":
    zygote.main(monitor.main, prefork=True, warm_up=common.warm_up)
