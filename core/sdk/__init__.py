"""The driver SDK: everything a driver may import from moorage, and nothing else.

A driver (built-in or third-party) imports this package's modules and its own family's shared
code (``moorage.drivers.<family>.common``), never the kernel, the services or another driver:
the families' contracts (``hookspecs``: a register hook and an abstract base class per family,
whose docstrings are the contract and docs/hooks.md), the error vocabulary (``errors``), the
driver base class and its typed options (``driver``), and the helpers drivers use: atomic state
files (``store``), confined tar extraction (``archive``, ``confined``, ``layers``), the mount
table (``mounts``), container logs (``logs``), confinement policy (``security``), validation of
names from outside (``validation``), ids and humanized sizes. docs/writing-a-driver.md shows a
complete driver. tests/test_architecture.py checks these rules.
"""
