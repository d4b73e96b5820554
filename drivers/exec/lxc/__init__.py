"""The ``lxc`` exec driver plugin (entry point ``lxc`` in the ``moorage`` group).

The driver module is imported only when the hook runs, so that the monitor process, which
imports this package, stays small.
"""

from moorage.core.sdk.hookspecs import hookimpl


@hookimpl
def moorage_exec_register():
    from moorage.drivers.exec.lxc.driver import LxcDriver

    return [LxcDriver]
