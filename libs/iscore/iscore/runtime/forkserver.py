"""A fork server for step children: one warm template process forks each child.

Starting an interpreter and importing the step runtime costs about 200 ms of
CPU per child, and with one child per step attempt that was the cost of a
no-op step. The template imports the runtime once; forking it costs about a
millisecond. Each attempt still runs in a fresh process of its own: the
forked child leads its own session, applies its limits and gets pipes of
its own, exactly like a child started from scratch (ARCHITECTURE.md,
"Isolation"). The template runs with the children's scrubbed environment,
so it holds no service secret either.

Protocol on a Unix socket pair: the pool sends one byte with three file
descriptors (the new child's stdin, stdout and stderr); the server forks and
answers ``P`` with the child's pid, later ``X`` with its wait status once it
has exited. The server exits when the pool's end of the socket closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import importlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path

from iscore.errors import IscoreError
from iscore.runtime import child as child_main

# One answer of the server: kind (b"P" forked, b"X" exited), pid, wait status.
RECORD = struct.Struct(">cii")

# Request byte of a fork; three descriptors travel with it.
FORK_REQUEST = b"F"

# prctl(2) option: the signal a process gets when its parent dies (Linux).
_PR_SET_PDEATHSIG = 1
try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:
    _LIBC = None


class ForkServerError(IscoreError):
    """The fork server could not be started or stopped answering."""

    code = "fork_server_failed"


class ForkServerExitedError(ForkServerError):
    """The fork server went away while a request was made or waited."""


# Server side --------------------------------------------------------------


def serve(sock_fd: int, options_json: str) -> int:
    """Fork a child per request until the pool closes its end; return the exit code."""
    sock = socket.socket(fileno=sock_fd)
    options = json.loads(options_json)
    for module_name in options.get("preload", ()):
        # A module that fails here fails again in the forked child, which
        # reports it to the pool as its start error, as a started child would.
        with contextlib.suppress(Exception):
            importlib.import_module(module_name)

    # Children share the template's pages copy-on-write; keep the collector
    # from walking (and so copying) them in every child.
    gc.freeze()
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    selector.register(wake_read, selectors.EVENT_READ)
    closing = (sock.fileno(), wake_read, wake_write, selector.fileno())
    server_pid = os.getpid()
    live: set[int] = set()
    while True:
        for key, _ in selector.select():
            if key.fd == wake_read:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_read, 4096)
                _reap(sock, live)
                continue
            try:
                request, fds, _, _ = socket.recv_fds(sock, 1, 3)
            except ConnectionError:
                request, fds = b"", []
            if not request:
                # The pool closed its end or its process died (a killed
                # stepworker): no step of it may run on unsupervised.
                _kill_groups(live)
                return 0
            pid = os.fork()
            if pid == 0:
                _become_child(fds, closing, options_json, server_pid)
            live.add(pid)
            for fd in fds:
                os.close(fd)
            sock.sendall(RECORD.pack(b"P", pid, 0))


def _reap(sock: socket.socket, live: set[int]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        live.discard(pid)
        with contextlib.suppress(OSError):
            sock.sendall(RECORD.pack(b"X", pid, status))


def _kill_groups(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def _die_with_parent(parent_pid: int) -> None:
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:
        # The parent died before the request took effect.
        os._exit(1)


def _become_child(
    fds: Sequence[int], closing: Sequence[int], options_json: str, server_pid: int
) -> None:
    """Turn the forked process into a step child; never returns."""
    code = 1
    try:
        os.setsid()
        # Die with the fork server: a step must not outlive the worker that
        # supervises it (the server kills its children's groups on a clean
        # end; this covers a server that was killed).
        _die_with_parent(server_pid)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in closing:
            os.close(fd)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            os.close(fd)
        code = child_main.main([options_json])
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os._exit(code)


# Pool side ----------------------------------------------------------------


class ForkedProcess:
    """A forked child seen like ``asyncio.subprocess.Process``.

    The fork server is the child's parent, so its exit status arrives as an
    ``X`` record; ``returncode`` follows asyncio's convention (negative
    signal number for a child killed by a signal).
    """

    def __init__(
        self,
        pid: int,
        stdin: asyncio.StreamWriter,
        stdout: asyncio.StreamReader,
        stderr: asyncio.StreamReader,
        exited: asyncio.Future[int],
    ) -> None:
        self.pid = pid
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self._exited = exited

    @property
    def returncode(self) -> int | None:
        if not self._exited.done():
            return None
        return os.waitstatus_to_exitcode(self._exited.result())

    async def wait(self) -> int:
        await asyncio.shield(self._exited)
        code = self.returncode
        return -1 if code is None else code


class ForkClient:
    """Starts the fork server and asks it for children."""

    def __init__(
        self, *, python: str, options_json: str, env: Mapping[str, str], cwd: Path
    ) -> None:
        self._python = python
        self._options_json = options_json
        self._env = dict(env)
        self._cwd = cwd
        self._process: asyncio.subprocess.Process | None = None
        self._sock: socket.socket | None = None
        self._reader: asyncio.Task[None] | None = None
        self._forks: deque[asyncio.Future[int]] = deque()
        self._exits: dict[int, asyncio.Future[int]] = {}
        # Held while the server is replaced, so concurrent requests start one.
        self._restarting = asyncio.Lock()

    @property
    def is_running(self) -> bool:
        return self._reader is not None and not self._reader.done()

    async def start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._process = await asyncio.create_subprocess_exec(
                # -P keeps the writable workdir off sys.path, -s the user site.
                *(
                    self._python,
                    "-P",
                    "-s",
                    "-m",
                    "iscore.runtime.forkserver",
                    str(theirs.fileno()),
                    self._options_json,
                ),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                env=self._env,
                cwd=self._cwd,
                start_new_session=True,
                pass_fds=(theirs.fileno(),),
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        self._reader = asyncio.create_task(self._read_records())

    async def spawn(self, *, limit: int) -> ForkedProcess:
        """Fork a new child and connect its pipes; raises ``ForkServerError``.

        A server that died (killed, out of memory) is started again, also
        when it dies while a request waits: that request is made once more.
        """
        try:
            return await self._spawn_once(limit)
        except ForkServerExitedError:
            return await self._spawn_once(limit)

    async def _spawn_once(self, limit: int) -> ForkedProcess:
        async with self._restarting:
            if self._sock is None or not self.is_running:
                await self.close()
                await self.start()
        sock = self._sock
        if sock is None:
            raise ForkServerError("The fork server is not running.")

        stdin_read, stdin_write = os.pipe()
        stdout_read, stdout_write = os.pipe()
        stderr_read, stderr_write = os.pipe()
        forked: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._forks.append(forked)
        try:
            socket.send_fds(sock, [FORK_REQUEST], [stdin_read, stdout_write, stderr_write])
        except OSError as err:
            self._forks.remove(forked)
            for fd in (stdin_write, stdout_read, stderr_read):
                os.close(fd)
            # The server is gone even if its end of the socket has not been
            # read to EOF yet: forget it (unless another request already
            # replaced it), so the next request starts a new one.
            async with self._restarting:
                if self._sock is sock:
                    await self.close()
            raise ForkServerExitedError(f"The fork server refused a request ({err}).") from err
        finally:
            for fd in (stdin_read, stdout_write, stderr_write):
                os.close(fd)
        try:
            pid = await forked
        except BaseException:
            for fd in (stdin_write, stdout_read, stderr_read):
                os.close(fd)
            raise
        return ForkedProcess(
            pid,
            await _writer(stdin_write),
            await _reader(stdout_read, limit),
            await _reader(stderr_read, limit),
            self._exits[pid],
        )

    async def close(self) -> None:
        """Stop the fork server and kill children it forked that still run."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            await self._process.wait()
        self._process = None

    async def _read_records(self) -> None:
        loop = asyncio.get_running_loop()
        buffer = b""
        try:
            while self._sock is not None:
                chunk = await loop.sock_recv(self._sock, 4096)
                if not chunk:
                    break
                buffer += chunk
                while len(buffer) >= RECORD.size:
                    kind, pid, status = RECORD.unpack_from(buffer)
                    buffer = buffer[RECORD.size :]
                    self._on_record(kind, pid, status, loop)
        except OSError:
            pass
        finally:
            self._server_gone()

    def _on_record(
        self, kind: bytes, pid: int, status: int, loop: asyncio.AbstractEventLoop
    ) -> None:
        if kind == b"P":
            self._exits[pid] = loop.create_future()
            forked = self._forks.popleft()
            if not forked.done():
                forked.set_result(pid)
            return
        exited = self._exits.pop(pid, None)
        if exited is not None and not exited.done():
            exited.set_result(status)

    def _server_gone(self) -> None:
        # Children of a dead server would be orphans whose exit nobody
        # reports: kill them so every waiting job sees a crash.
        for forked in self._forks:
            if not forked.done():
                forked.set_exception(ForkServerExitedError("The fork server exited."))
        self._forks.clear()
        for pid, exited in self._exits.items():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            if not exited.done():
                exited.set_result(signal.SIGKILL)
        self._exits.clear()


async def _reader(fd: int, limit: int) -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    return reader


async def _writer(fd: int) -> asyncio.StreamWriter:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.connect_write_pipe(
        _WriteProtocol, os.fdopen(fd, "wb", buffering=0)
    )
    return asyncio.StreamWriter(transport, protocol, None, loop)


class _WriteProtocol(asyncio.streams.FlowControlMixin, asyncio.Protocol):
    """Flow control for the child's stdin, so ``drain()`` waits on a full pipe."""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    return serve(int(args[0]), args[1])


if __name__ == "__main__":
    sys.exit(main())
