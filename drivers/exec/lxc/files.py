"""Names of the files the lxc driver keeps in ``<state_dir>/exec`` (kept apart from ``config`` so
that the monitor process imports nothing heavy)."""

START_FIFO = "start.fifo"
GO_FIFO = "go.fifo"
HOOK = "start-host.sh"
LOG = "lxc.log"
CONFIG = "lxc.conf"
