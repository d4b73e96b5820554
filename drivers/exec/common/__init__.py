"""What the ``native`` and ``lxc`` exec drivers share (not a plugin: it registers nothing).

Both run each container under a monitor process forked from a zygote and talk to it over one
framed protocol; they differ only in how the monitor spawns the container's first process.

- ``driver``: ``MonitorDriver``, the daemon side (zygote, start handshake, wait, signal,
  attach, resize, restore) and ``MonitorAttachment``.
- ``monitor``: ``Monitor``, the monitor's I/O loop, with ``spawn`` left to each driver.
- ``zygote``: the zygote's loop; each driver's ``zygote`` module runs it with its monitor.
- ``protocol``: the frames on ``monitor.sock``.
- ``policy``: the request checks and the limits of an unprivileged container (capabilities,
  devices), and cgroup directory removal.
- ``users``, ``linux``: resolving ``User``; the system calls Python does not wrap.
"""
