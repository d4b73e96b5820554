"""The ``native`` exec driver plugin (entry point ``native`` in the ``moorage`` group).

The driver module is imported only when the hook runs, so that the zygote process, which
imports this package, stays small.
"""

from moorage.core.sdk.hookspecs import hookimpl


@hookimpl
def moorage_exec_register():
    from moorage.drivers.exec.native.driver import NativeDriver

    return [NativeDriver]
