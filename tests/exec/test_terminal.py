"""``common.terminal``: the hand-over of a pty master between a child inside a container and the
daemon or monitor. The receiving side trusts nothing it gets: only a pty master is used, what
comes before it is bounded, and a silent child ends in a timeout. No root needed."""

from __future__ import annotations

import os
import socket

import pytest

from moorage.drivers.exec.common import terminal


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    yield ours, theirs
    ours.close()
    theirs.close()


def test_a_pty_master_is_received_with_what_came_before(pair):
    ours, theirs = pair
    master, slave = os.openpty()
    try:
        theirs.sendall(b"warming up\n")
        terminal.send_master(theirs, master)
        got, said = terminal.receive_master(ours, 5, 1024)
        try:
            assert said == b"warming up\n"
            assert os.get_inheritable(got) is False
            terminal.set_size(got, 31, 97)
            assert os.get_terminal_size(slave) == os.terminal_size((97, 31))
        finally:
            os.close(got)
    finally:
        os.close(master)
        os.close(slave)


def test_anything_else_than_a_pty_master_is_refused(pair, tmp_path):
    ours, theirs = pair
    master, slave = os.openpty()
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        for wrong in (fd, slave):  # a directory; a pty's slave
            terminal.send_master(theirs, wrong)
            with pytest.raises(OSError, match="not a pty master"):
                terminal.receive_master(ours, 5, 1024)
    finally:
        for end in (fd, master, slave):
            os.close(end)


def test_a_child_that_fails_says_why_within_the_bound(pair):
    ours, theirs = pair
    theirs.sendall(b"x" * 5000)
    theirs.close()
    assert terminal.receive_master(ours, 5, 100) == (-1, b"x" * 100)


def test_a_silent_child_times_out(pair):
    ours, _ = pair
    with pytest.raises(TimeoutError):
        terminal.receive_master(ours, 0.2, 100)
