"""Real servers for tests, started and stopped by the tests, on loopback only.

- ``PostgresServer``: a throw-away PostgreSQL cluster from Debian's binaries
  (``/usr/lib/postgresql/<version>/bin``), in a temporary folder, listening on 127.0.0.1 on a
  free port, with no Unix socket. As root it runs as the ``postgres`` user (``initdb`` refuses
  root); otherwise as the current user.
- ``listening_sockets(pid)``: every TCP socket in LISTEN state and every bound UDP socket of a
  process and its descendants, read from ``/proc``, so a test can check that a server it started
  (PostgreSQL here, a Dask cluster later) is reachable from this machine only.

Nothing here imports Dagster or the pipeline.
"""

from __future__ import annotations

import glob
import ipaddress
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"


class ServerUnavailable(RuntimeError):
    """The server's programs are not installed here (tests skip with this reason)."""


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nothing listens on at ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def postgres_bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding initdb, postgres and pg_ctl."""
    found = []
    for initdb in glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        folder = Path(initdb).parent
        version = folder.parent.name
        if all((folder / p).exists() for p in ("postgres", "pg_ctl")) and version.isdigit():
            found.append((int(version), folder))
    if not found:
        raise ServerUnavailable(
            "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb): install "
            "Debian's `postgresql` package (.ci/run does)"
        )
    return max(found)[1]


@dataclass
class Socket:
    pid: int
    protocol: str  # tcp, tcp6, udp, udp6
    address: str
    port: int

    @property
    def is_loopback(self) -> bool:
        ip = ipaddress.ip_address(self.address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return ip.is_loopback

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.protocol} {host}:{self.port} (pid {self.pid})"


def descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it (from the parent ids in /proc/<pid>/stat)."""
    children: dict[int, list[int]] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = Path(stat).read_text()
        except OSError:  # gone meanwhile
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        fields = text[text.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(stat.split("/")[2]))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:  # gone, or not ours to read
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _address(hex_address: str) -> str:
    """An address as /proc/net/{tcp,udp}{,6} writes it: 32-bit words in host (little-endian)
    byte order."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    family = socket.AF_INET if len(words) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, words)


def parse_proc_net(text: str, protocol: str) -> dict[int, tuple[str, int]]:
    """inode -> (address, port) of the listening sockets in one /proc/net table: TCP in state
    LISTEN (0A), UDP bound with no peer (any state: UDP has no listen)."""
    found = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
        if protocol.startswith("tcp") and state != "0A":
            continue
        if protocol.startswith("udp") and int(remote.split(":")[1], 16) != 0:
            continue  # a connected UDP socket talks to one peer; it does not accept from others
        address, port = local.split(":")
        found[inode] = (_address(address), int(port, 16))
    return found


def listening_sockets(pid: int) -> list[Socket]:
    """Every TCP socket in LISTEN state and every unconnected UDP socket held by ``pid`` or a
    descendant, with its local address and port."""
    sockets = []
    for member in descendants(pid):
        inodes = _socket_inodes(member)
        if not inodes:
            continue
        for protocol in ("tcp", "tcp6", "udp", "udp6"):
            try:  # the process's own network namespace
                table = Path(f"/proc/{member}/net/{protocol}").read_text()
            except OSError:
                continue
            for inode, (address, port) in parse_proc_net(table, protocol).items():
                if inode in inodes:
                    sockets.append(Socket(member, protocol, address, port))
    return sockets


class PostgresServer:
    """A PostgreSQL server of its own for the duration of a ``with`` block.

    ``initdb --auth=trust -U postgres -E UTF8`` in a temporary folder, ``postgres`` listening on
    127.0.0.1 only, on a free port, with Unix sockets off; a database ``db_name`` created; on
    exit a fast shutdown (``pg_ctl stop -m fast``, then SIGKILL if need be) and the folder
    removed, whatever happened in the block.
    """

    user = "postgres"
    host = LOOPBACK

    def __init__(self, db_name: str = "dagster", start_timeout: float = 60.0):
        self.db_name = db_name
        self.start_timeout = start_timeout
        self.bin = postgres_bin_dir()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            try:
                self._account = pwd.getpwnam("postgres")
            except KeyError as err:
                raise ServerUnavailable(
                    "running as root and there is no `postgres` user to run PostgreSQL as"
                ) from err
        self.folder: Path | None = None
        self.process: subprocess.Popen | None = None
        self.port = 0

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    @property
    def data_dir(self) -> Path:
        assert self.folder is not None, "not started"
        return self.folder / "data"

    def connect(self, db_name: str | None = None, **kwargs):
        import psycopg2

        return psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            dbname=db_name or self.db_name,
            connect_timeout=5,
            **kwargs,
        )

    def dagster_env(self, db_name: str | None = None) -> dict[str, str]:
        """The variables docs/deploy/dagster.yaml reads."""
        return {
            "DAGSTER_PG_USERNAME": self.user,
            "DAGSTER_PG_PASSWORD": "",  # trust authentication
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_DB": db_name or self.db_name,
            "DAGSTER_PG_PORT": str(self.port),
        }

    # --- running PostgreSQL's programs as the right user --------------------------------------

    def _as_owner(self) -> dict:
        if not self.as_root:
            return {}
        return {"user": self._account.pw_uid, "group": self._account.pw_gid, "extra_groups": []}

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [str(a) for a in args],
            capture_output=True,
            text=True,
            timeout=self.start_timeout,
            cwd=self.folder,
            env=self._env(),
            **self._as_owner(),
        )
        if done.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed:\n{done.stdout}\n{done.stderr}")
        return done

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = env["LANG"] = "C.UTF-8"
        if self.as_root:
            env["HOME"] = self._account.pw_dir
        return env

    # --- life cycle -------------------------------------------------------------------------------

    def __enter__(self) -> PostgresServer:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _start(self) -> None:
        # Not under pytest's tmp_path: that is private to its user, and the server runs as postgres.
        self.folder = Path(tempfile.mkdtemp(prefix="loan-pipeline-pg-"))
        if self.as_root:
            os.chown(self.folder, self._account.pw_uid, self._account.pw_gid)
        self._run(
            self.bin / "initdb",
            "--pgdata",
            self.data_dir,
            "--auth=trust",
            "--username",
            self.user,
            "--encoding",
            "UTF8",
        )
        for attempt in range(3):  # the free port may be taken between choosing and binding
            self.port = free_port()
            if self._launch():
                break
            if attempt == 2:
                raise RuntimeError(f"PostgreSQL did not start:\n{self.log()}")
        self.create_database(self.db_name)

    def create_database(self, name: str) -> str:
        """A new, empty database on this server (e.g. one per test that counts rows)."""
        con = self.connect("postgres")
        try:
            con.autocommit = True
            with con.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            con.close()
        return name

    def _launch(self) -> bool:
        with open(self.folder / "postgres.log", "ab") as log:  # the server keeps its own copy
            self.process = self._popen_server(log)
        import psycopg2

        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False  # exited: the port was taken, or worse (see log())
            try:
                self.connect("postgres").close()
                return True
            except psycopg2.OperationalError:
                time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL did not accept connections in time:\n{self.log()}")

    def _popen_server(self, log) -> subprocess.Popen:
        return subprocess.Popen(
            [
                str(self.bin / "postgres"),
                "-D",
                str(self.data_dir),
                "-c",
                f"listen_addresses={LOOPBACK}",
                "-c",
                f"port={self.port}",
                "-c",
                "unix_socket_directories=",
                # a test database: durability is not needed, speed is
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=50",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.folder,
            env=self._env(),
            start_new_session=True,  # Ctrl-C in the terminal reaches pytest, not the server
            **self._as_owner(),
        )

    def log(self) -> str:
        path = self.folder / "postgres.log" if self.folder else None
        return path.read_text(errors="replace")[-4000:] if path and path.exists() else ""

    def stop(self) -> None:
        """Fast shutdown, then the folder removed; safe to call twice or after a failed start."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            try:
                self._run(self.bin / "pg_ctl", "stop", "-D", self.data_dir, "-m", "fast", "-w")
                process.wait(timeout=30)
            except (RuntimeError, subprocess.TimeoutExpired):
                process.send_signal(signal.SIGQUIT)  # immediate shutdown
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
