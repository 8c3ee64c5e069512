"""Make sure test servers die with their owner: process trees, directories, exit."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import weakref
from typing import Any

__all__ = [
    "Resources",
    "descendants",
    "free_port",
    "is_alive",
    "signal_tree",
    "track",
]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that the OS considers free right now.

    Someone may grab it before the server binds, so callers retry on
    "address already in use" instead of trusting this.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces; everything
    # after the last ")" is space separated: state, ppid, ...
    return data[data.rfind(")") + 2 :].split()


def is_alive(pid: int) -> bool:
    """Tell whether *pid* runs; a zombie counts as dead (it only awaits reaping)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def descendants(pid: int) -> list[int]:
    """Return every live descendant of *pid* (children first, then theirs).

    Scanning ``/proc`` for parent ids works on every kernel, unlike
    ``/proc/<pid>/task/<tid>/children`` which needs CONFIG_PROC_CHILDREN.
    """
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is None or fields[0] in ("Z", "X"):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    result: list[int] = []
    frontier = [pid]
    while frontier:
        kids = children.get(frontier.pop(0), [])
        result.extend(kids)
        frontier.extend(kids)
    return result


def signal_tree(pid: int, sig: int, *, parent_first: bool = True) -> list[int]:
    """Send *sig* to *pid* and all its descendants; return the pids signalled.

    For SIGSTOP the parent goes first so it cannot fork a new child that
    escapes; for SIGCONT the children go first so the parent wakes last.
    """
    tree = [pid, *descendants(pid)]
    order = tree if parent_first else list(reversed(tree))
    for p in order:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass
    return tree


class Resources:
    """The processes and directories one test server owns.

    Kept apart from the server object so that ``weakref.finalize`` can clean
    up after a server that was garbage collected or outlived by the
    interpreter, without keeping the server itself alive.
    """

    def __init__(self, label: str) -> None:
        self.label = label
        self.procs: list[tuple[subprocess.Popen[Any], int]] = []
        self.dirs: list[str] = []
        self.keep = False
        # Cleanup can race between a test thread and atexit; one lock, one run.
        self._lock = threading.Lock()

    def add_process(self, proc: subprocess.Popen[Any], stop_signal: int) -> None:
        """Track *proc*; on cleanup it gets *stop_signal*, then SIGKILL."""
        self.procs.append((proc, stop_signal))

    def reap(self) -> None:
        """Forget processes that have already exited (and reap them)."""
        self.procs = [(p, s) for p, s in self.procs if p.poll() is None]

    def kill_processes(self, grace: float = 5.0) -> None:
        """Stop every tracked process: polite signal first, SIGKILL on timeout."""
        for proc, stop_signal in self.procs:
            if proc.poll() is not None:
                continue
            # Remember the tree now: once the parent is gone its children are
            # reparented and can no longer be found through it.
            tree = [proc.pid, *descendants(proc.pid)]
            # A paused (SIGSTOPped) server would sit on the polite signal
            # until the SIGKILL fallback; wake it so it can shut down cleanly.
            signal_tree(proc.pid, signal.SIGCONT, parent_first=False)
            try:
                proc.send_signal(stop_signal)
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
            for pid in tree:
                if is_alive(pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:  # pragma: no cover - kernel stuck
                pass
            # Orphaned children of a SIGKILLed postmaster exit on their own
            # when they notice; wait briefly so no stray process survives us.
            deadline = time.monotonic() + grace
            while any(is_alive(p) for p in tree[1:]) and time.monotonic() < deadline:
                time.sleep(0.01)
        self.procs.clear()

    def release(self) -> None:
        """Kill processes and remove directories (unless ``keep``); idempotent."""
        with self._lock:
            self.kill_processes()
            if not self.keep:
                for path in self.dirs:
                    shutil.rmtree(path, ignore_errors=True)
            self.dirs.clear()


def track(owner: object, resources: Resources) -> weakref.finalize[[], object]:
    """Release *resources* when *owner* is collected or the interpreter exits."""
    return weakref.finalize(owner, resources.release)
