"""SIGPIPE in the moorage command: listings end quietly in a closed pipe, while the commands
that run drivers in-process keep Python's EPIPE errors (a monitor or daemon socket that closes
must not kill them silently: `moorage bench` died of it, exit status 243)."""

from __future__ import annotations

import signal

import pytest

from moorage.api.cli import main as cli


@pytest.mark.parametrize(("argv", "disposition"), [
    (["bench", "exec"], signal.SIG_IGN),
    (["drivers"], signal.SIG_DFL),
])
def test_sigpipe_disposition_per_command(monkeypatch, argv, disposition):
    seen = []
    monkeypatch.setitem(cli.COMMANDS, argv[0], lambda args: seen.append(signal.getsignal(signal.SIGPIPE)) or 0)
    before = signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as Python starts
    try:
        assert cli.main(argv) == 0
    finally:
        signal.signal(signal.SIGPIPE, before)
    assert seen == [disposition]
