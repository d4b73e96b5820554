"""``POST /containers/{id}/attach``: the connection is taken over (``api/http/hijack.py``) and raw
bytes flow both ways (reference §4.1).

Without a tty and for API ≥ 1.6, output is multiplexed: each write is a frame with an 8-byte
header ``[stream, 0, 0, 0, size (uint32 big-endian)]``. With ``logs=1`` the JSON log is
replayed first, streamed from disk (rotated files first, ``replay_log``); with ``stream=1``
live output follows, and stdin flows to the container when ``stdin=1`` and the container has
``OpenStdin``.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import Request, Response, WebSocket, WebSocketDisconnect

from moorage.api.http.errors import plain
from moorage.api.http.hijack import RawConnection, hijack, wants_upgrade
from moorage.api.http.params import ApiVersion, ContainersDep, KernelDep, RunnerDep, parse_bool, query_bool
from moorage.core.sdk.hookspecs.exec import Attachment, Stream
from moorage.core.sdk.logs import LogPosition, read_log
from moorage.core.services.runner import PendingAttach, StreamSource

DETACH = (b"\x10", b"\x11")  # Ctrl-P then Ctrl-Q, each alone in one read
REPLAY_BATCH = 1 << 20


class OutputWriter:
    def __init__(self, raw: RawConnection, multiplex: bool) -> None:
        self.raw, self.multiplex = raw, multiplex

    async def write(self, stream: Stream, data: bytes) -> None:
        if not data:
            return
        if self.multiplex:
            data = struct.pack(">BxxxI", int(stream), len(data)) + data
        await self.raw.write(data)


async def copy_output(kernel, source: Attachment, out: OutputWriter, wanted: dict) -> None:
    """Copy ``source``'s output to the client, the ``wanted`` streams only, until it ends."""
    while True:
        item = await kernel.run_waiting(source.read)
        if item is None:
            return
        which, data = item
        if wanted.get(which):
            await out.write(which, data)


async def replay_log(kernel, path: Path, wanted: dict[Stream, bool], until: LogPosition | None = None
                     ) -> AsyncIterator[tuple[Stream, bytes]]:
    """The log's entries of the wanted streams (up to ``until``), read from disk in the kernel's
    executor about ``REPLAY_BATCH`` bytes at a time: the daemon holds one batch, whatever the
    log's size."""
    streams = tuple(s.name.lower() for s, on in wanted.items() if on)
    # read_log opens the files (and may wait for a rotation's lock): in the executor
    entries = await kernel.run_blocking(read_log, path, streams, None, until)

    def batch() -> list[tuple[Stream, bytes]]:
        out, size = [], 0
        for entry in entries:
            data = entry.log.encode()
            out.append((Stream.STDERR if entry.stream == "stderr" else Stream.STDOUT, data))
            size += len(data)
            if size >= REPLAY_BATCH:
                break
        return out

    try:
        while items := await kernel.run_blocking(batch):
            for item in items:
                yield item
    finally:
        await kernel.run_blocking(entries.close)


async def attach(name: str, request: Request, kernel: KernelDep, containers: ContainersDep, runner: RunnerDep,
                 version: ApiVersion) -> Response:
    logs, stream = query_bool(request, "logs"), query_bool(request, "stream")
    want_stdin, want_stdout, want_stderr = (query_bool(request, n) for n in ("stdin", "stdout", "stderr"))
    container = await kernel.run_blocking(containers.get, name)  # 404 before the takeover
    # the stream's source is fixed before the client is answered (``Runner.attach_stream``)
    source = await kernel.run_waiting(runner.attach_stream, container.id) if stream else None
    raw = hijack(request.scope)
    try:
        await raw.send_status(upgrade=wants_upgrade(request.headers))
        tty = bool(container.config.tty)
        out = OutputWriter(raw, multiplex=not tty and version >= 1.6)
        wanted = {Stream.STDOUT: want_stdout, Stream.STDERR: want_stderr}
        if logs:
            until = source.log_end if source is not None else None  # after it: the stream's
            async with contextlib.aclosing(replay_log(kernel, container.log_path, wanted, until)) as replay:
                async for which, data in replay:  # a client gone mid-replay closes the files at once
                    await out.write(which, data)
        if source is not None:
            await _stream(kernel, runner, container, source, raw, out, wanted,
                          want_stdin and container.config.open_stdin, tty)
    except (ConnectionError, OSError):
        pass
    finally:
        raw.close()
        if source is not None:
            await kernel.run_blocking(source.close)
    return Response()


async def _stream(kernel, runner, container, source: StreamSource, raw: RawConnection, out: OutputWriter,
                  wanted, stdin: bool, tty: bool) -> None:
    attachment = source.attachment
    if source.pending is not None:
        attachment = await _wait_for_start(kernel, source.pending, raw)
    if attachment is None:
        return
    stdin_once = bool(container.config.stdin_once) and not tty

    async def pump_output() -> None:
        await copy_output(kernel, attachment, out, wanted)

    async def pump_input() -> None:
        while True:
            data = await raw.read()
            if not data:
                break
            if tty and data in DETACH:
                if data == DETACH[1]:
                    break
                continue
            await kernel.run_waiting(attachment.write, data)
        if stdin_once:
            await kernel.run_blocking(attachment.close_stdin)
        else:
            await kernel.run_blocking(attachment.close)  # ends the attach; the process keeps running

    output = asyncio.ensure_future(pump_output())
    tasks = {output}
    if stdin:
        tasks.add(asyncio.ensure_future(pump_input()))
    else:
        tasks.add(asyncio.ensure_future(_drain_input(raw)))
    try:
        await output
        if stdin_once:
            await kernel.run_waiting(runner.wait, container.id)
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await kernel.run_blocking(attachment.close)


async def _wait_for_start(kernel, pending: PendingAttach, raw: RawConnection):
    """Wait until the container starts (or the client goes away): Docker attached to a stopped
    container's output streams, which carried the output of its next start."""
    waiter = asyncio.ensure_future(kernel.run_waiting(pending.wait))
    gone = asyncio.ensure_future(raw.closed.wait())
    await asyncio.wait({waiter, gone}, return_when=asyncio.FIRST_COMPLETED)
    if not waiter.done():
        pending.cancel()
        gone.cancel()
        await waiter
        return None
    gone.cancel()
    return waiter.result()


async def _drain_input(raw: RawConnection) -> None:
    """Input without stdin is dropped (Docker did the same)."""
    while await raw.read():
        pass


async def attach_ws(websocket: WebSocket, name: str) -> None:
    """``GET /containers/{id}/attach/ws``: the same parameters over one websocket carrying
    stdin, stdout and stderr, never multiplexed (reference §4.2). An unknown container is
    refused before the upgrade with an ordinary 404."""
    kernel = websocket.app.state.kernel
    containers, runner = kernel.services.containers, kernel.services.runner
    params = websocket.query_params
    flags = {n: parse_bool(params.get(n), n) for n in ("logs", "stream", "stdin", "stdout", "stderr")}
    container = containers.lookup(name) if containers is not None else None
    if container is None:
        await websocket.send_denial_response(plain(f"No such container: {name}", 404))
        return
    await websocket.accept()
    wanted = {Stream.STDOUT: flags["stdout"], Stream.STDERR: flags["stderr"]}
    try:
        if flags["logs"]:
            async with contextlib.aclosing(replay_log(kernel, container.log_path, wanted)) as replay:
                async for _, data in replay:
                    await websocket.send_bytes(data)
        if flags["stream"]:
            container, attachment = await kernel.run_blocking(runner.attach, container.id)
            if attachment is not None:
                await _pump_ws(kernel, websocket, attachment, wanted,
                               flags["stdin"] and container.config.open_stdin)
    except WebSocketDisconnect:
        return
    with contextlib.suppress(Exception):
        await websocket.close()


async def _pump_ws(kernel, websocket: WebSocket, attachment, wanted, stdin: bool) -> None:
    async def output() -> None:
        while (item := await kernel.run_waiting(attachment.read)) is not None:
            if wanted.get(item[0]):
                await websocket.send_bytes(item[1])

    async def input_() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                await kernel.run_blocking(attachment.close)
                return
            data = message.get("bytes") or (message.get("text") or "").encode()
            if stdin and data:
                await kernel.run_waiting(attachment.write, data)

    out_task, in_task = asyncio.ensure_future(output()), asyncio.ensure_future(input_())
    try:
        await asyncio.wait({out_task, in_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (out_task, in_task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await kernel.run_blocking(attachment.close)
