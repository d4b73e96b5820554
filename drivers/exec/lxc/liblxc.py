"""The few calls of liblxc's public C API (``lxc/lxccontainer.h``, LXC 5) the driver uses, through ctypes.

Why not ``lxc-start``: ``lxc-start -F`` always exits 0 once the container ran, so the container's
exit status is lost; ``lxc-execute`` keeps it but puts ``init.lxc`` in front of the command as
pid 1. The API's ``start`` in the foreground with ``useinit = 0`` runs the command as pid 1 and
leaves the init process's wait status in ``error_num``. The Python binding (``python3-lxc``) is
built only for Debian's system interpreter and the PyPI sdist needs LXC's headers and a compiler,
so ctypes on the installed ``liblxc.so.1`` is the smallest dependency.
"""

from __future__ import annotations

import ctypes

LIBRARY = "liblxc.so.1"


class _Container(ctypes.Structure):
    pass


_P = ctypes.POINTER(_Container)
_bool_fn = ctypes.CFUNCTYPE(ctypes.c_bool, _P)

# The leading members of struct lxc_container, in header order, up to the last one used.
_Container._fields_ = [
    ("name", ctypes.c_char_p),
    ("configfile", ctypes.c_char_p),
    ("pidfile", ctypes.c_char_p),
    ("slock", ctypes.c_void_p),
    ("privlock", ctypes.c_void_p),
    ("numthreads", ctypes.c_int),
    ("lxc_conf", ctypes.c_void_p),
    ("error_string", ctypes.c_char_p),
    ("error_num", ctypes.c_int),
    ("daemonize", ctypes.c_bool),
    ("config_path", ctypes.c_char_p),
    ("is_defined", _bool_fn),
    ("state", ctypes.CFUNCTYPE(ctypes.c_char_p, _P)),
    ("is_running", _bool_fn),
    ("freeze", _bool_fn),
    ("unfreeze", _bool_fn),
    ("init_pid", ctypes.CFUNCTYPE(ctypes.c_int, _P)),
    ("load_config", ctypes.CFUNCTYPE(ctypes.c_bool, _P, ctypes.c_char_p)),
    ("start", ctypes.CFUNCTYPE(ctypes.c_bool, _P, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p))),
    ("startl", ctypes.c_void_p),
    ("stop", _bool_fn),
    ("want_daemonize", ctypes.CFUNCTYPE(ctypes.c_bool, _P, ctypes.c_bool)),
    ("want_close_all_fds", ctypes.CFUNCTYPE(ctypes.c_bool, _P, ctypes.c_bool)),
    ("config_file_name", ctypes.c_void_p),
    ("wait", ctypes.c_void_p),
    ("set_config_item", ctypes.CFUNCTYPE(ctypes.c_bool, _P, ctypes.c_char_p, ctypes.c_char_p)),
]


class LxcFailed(Exception):
    """liblxc could not set up or start the container (its log file says why)."""


def load() -> ctypes.CDLL:
    """The library, with the prototypes used here; OSError if it is not installed."""
    lib = ctypes.CDLL(LIBRARY, use_errno=True)
    lib.lxc_get_version.restype = ctypes.c_char_p
    lib.lxc_get_version.argtypes = ()
    lib.lxc_container_new.restype = _P
    lib.lxc_container_new.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
    lib.lxc_container_put.restype = ctypes.c_int
    lib.lxc_container_put.argtypes = (_P,)
    return lib


def version(lib: ctypes.CDLL) -> str:
    return lib.lxc_get_version().decode()



def refused_item(lib: ctypes.CDLL, items: list[tuple[str, str]]) -> tuple[str, str] | None:
    """The first ``(key, value)`` that liblxc refuses to set on an empty container, or None."""
    c = lib.lxc_container_new(b"moorage-check", b"/nonexistent")
    if not c:
        return None
    try:
        for key, value in items:
            if not c.contents.set_config_item(c, key.encode(), value.encode()):
                return key, value
        return None
    finally:
        lib.lxc_container_put(c)


def run_foreground(lib: ctypes.CDLL, name: str, lxcpath: str, config: str, argv: list[str],
                   options: list[tuple[str, str]] | None = None) -> int:
    """Run container ``name`` from config file ``config`` in this process until its init exits.

    Returns liblxc's ``error_num`` (see ``monitor.exit_code``). Raises ``LxcFailed`` if the
    config cannot be loaded or the container cannot be started; ``options`` are the entries the
    user added to the config, checked one by one to name the culprit when loading fails. Call it
    in a child process: liblxc changes the process's signal mask and waits for its own children.
    """
    c = lib.lxc_container_new(name.encode(), lxcpath.encode())
    if not c:
        raise LxcFailed(f"liblxc cannot create a container handle for {name}")
    try:
        box = c.contents
        if not box.load_config(c, config.encode()):
            refused = refused_item(lib, options or [])
            if refused is not None:
                raise LxcFailed(f"LXC refuses the config entry {refused[0]} = {refused[1]}")
            raise LxcFailed(f"liblxc refused the config file {config}")
        box.want_daemonize(c, False)
        box.want_close_all_fds(c, True)
        args = (ctypes.c_char_p * (len(argv) + 1))(*(a.encode() for a in argv), None)
        if not box.start(c, 0, args):
            raise LxcFailed(f"liblxc could not start container {name}")
        return int(box.error_num)
    finally:
        lib.lxc_container_put(c)
