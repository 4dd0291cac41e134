"""Local S3 servers for the tests and the benchmarks, each a separate
process spoken to over HTTP on a loopback port:

- :class:`VersityGW`: versitygw (a Go S3 server storing plain files, built by
  ``make versitygw`` into :data:`VERSITYGW_CACHE`), the default: a real,
  strict S3 at several times moto's request rate;
- :class:`MotoServer`: moto's server (Python), kept for comparison in the
  benchmarks and for tests that need moto itself.

Each server has one key pair, ``access_key`` and ``secret_key`` (a random
secret per server, so a test can look for it where it must not be), and is
used as a context manager or with :meth:`S3Server.start` /
:meth:`S3Server.stop`::

    with VersityGW(data_dir) as server:
        os.environ.update(server.env())   # boto3 and pipectl now reach it
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time

from . import stop_process

VERSITYGW_CACHE = os.environ.get("PIPECTL_VERSITYGW_CACHE", os.path.expanduser("~/.cache/pipectl/versitygw"))
REGION = "us-east-1"


class ServerError(RuntimeError):
    """An S3 server did not start (the message carries the end of its log)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def versitygw_binary() -> str | None:
    """Path of the versitygw binary (``$PIPECTL_VERSITYGW_CACHE/bin``, else
    on ``PATH``), or None when it is not built (``make versitygw``)."""
    path = os.path.join(VERSITYGW_CACHE, "bin", "versitygw")
    return path if os.access(path, os.X_OK) else shutil.which("versitygw")


class S3Endpoint:
    """Where an S3 server answers and its key pair: ``endpoint`` (URL),
    ``access_key``, ``secret_key``."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str):
        self.endpoint, self.access_key, self.secret_key = endpoint, access_key, secret_key

    def env(self) -> dict[str, str]:
        """The AWS variables that point boto3 (and pipectl) at this server."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}


def random_secret() -> str:
    """A fresh secret key (``s3cret-`` and 24 hex digits)."""
    return "s3cret-" + secrets.token_hex(12)


class S3Server(S3Endpoint):
    """One server process on ``host``:``port`` (a free port when 0),
    ``endpoint`` its URL, key pair ``testing`` and a random secret.
    :meth:`start` returns once it accepts connections (ServerError after
    ``timeout`` seconds, or if it exits); :meth:`stop` terminates it (by its
    own pid) and waits. ``log_path``: where its output goes (discarded when
    None)."""

    name = ""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, log_path: str | None = None):
        self.host, self.port = host, port or free_port(host)
        super().__init__(f"http://{host}:{self.port}", "testing", random_secret())
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        """The server's environment."""
        return dict(os.environ)

    def start(self, timeout: float = 30) -> S3Server:
        with open(self.log_path or os.devnull, "wb") as log:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log, env=self.environment(),
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        tail = ""
        if self.log_path and os.path.exists(self.log_path):
            with open(self.log_path, errors="replace") as f:
                tail = ": " + " | ".join(f.read().splitlines()[-5:])
        raise ServerError(f"{self.name} server did not start on {self.endpoint}{tail}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 10)
        self.proc = None

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class VersityGW(S3Server):
    """versitygw's posix backend serving the directories under ``data_dir``
    as buckets (one root account: ``access_key``/``secret_key``).
    Raises ServerError at start when the binary is not built."""

    name = "versitygw"

    def __init__(self, data_dir: str, host: str = "127.0.0.1", port: int = 0, log_path: str | None = None):
        super().__init__(host, port, log_path)
        self.data_dir = data_dir

    def command(self) -> list[str]:
        binary = versitygw_binary()
        if binary is None:
            raise ServerError(f"versitygw not built (no {VERSITYGW_CACHE}/bin/versitygw): run `make versitygw`")
        os.makedirs(self.data_dir, exist_ok=True)
        return [binary, "--quiet", "--keep-alive", "--region", REGION, "--port", f"{self.host}:{self.port}",
                "posix", self.data_dir]

    def environment(self) -> dict[str, str]:
        # the key pair in the environment, not on a command line any local user can read
        return {**os.environ, "ROOT_ACCESS_KEY_ID": self.access_key, "ROOT_SECRET_ACCESS_KEY": self.secret_key}


class MotoServer(S3Server):
    """``python -m moto.server`` (in memory; it takes any key pair)."""

    name = "moto"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)]
