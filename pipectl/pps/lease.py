"""One active controller per store: a lease object in the store itself,
taken and renewed by compare-and-swap, for every executor.

The algorithm is client-go's ``tools/leaderelection`` (as ``leader.py``
uses it on a Kubernetes Lease) with a store object as the lock:

- a candidate reads the lease; it may take it when no one holds it, when the
  record has not changed for ``lease_seconds`` *as observed on the
  candidate's own clock* (clock skew between machines does not matter), or
  at once when the holder is a process of this host that is gone (a
  controller killed with SIGKILL); it writes itself in by compare-and-swap,
  so of two candidates racing, the store accepts one;
- each takeover increments the lease's ``token``, the fencing token: the
  controller writes it into the jobs it runs (``JobInfo.claim``) and lands a
  job's output only while the job still carries it;
- the holder renews it (from its main loop: no thread, so the process
  executor may still fork workers) and stops leading once it has not renewed
  for ``renew_seconds`` (< ``lease_seconds``), before anyone may take over;
- on shutdown it releases the lease, so a successor starts at once.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time

from ..errors import NotFound, PipectlError, PreconditionFailed
from ..pfs.model import Record, now
from ..store import ObjectStore
from . import keys

log = logging.getLogger("pipectl.lease")


@dataclasses.dataclass
class LeaseRecord(Record):
    """The stored lease: ``holder`` (empty when free), ``token`` (takeovers so
    far), ``renewed`` (ISO time, informative), ``seconds`` (its duration)."""

    holder: str = ""
    token: int = 0
    renewed: str = ""
    seconds: float = 15.0


def default_identity() -> str:
    """``<host>:<pid>``: unique among running controllers, and tells a
    candidate on the same host whether the holder is still alive."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _gone(holder: str) -> bool:
    """Whether ``holder`` names a process of this host that no longer runs."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class StoreLease:
    """Campaigns for the controller lease of ``store`` as ``identity``.
    Durations in seconds."""

    def __init__(self, store: ObjectStore, identity: str | None = None, lease_seconds: float = 15,
                 renew_seconds: float = 10, retry_seconds: float = 1):
        if not 0 < renew_seconds < lease_seconds:
            raise ValueError("renew_seconds must be positive and shorter than lease_seconds")
        self.store = store
        self.identity = identity or default_identity()
        self.lease_seconds, self.renew_seconds, self.retry_seconds = lease_seconds, renew_seconds, retry_seconds
        self.token = 0
        """The fencing token of the current term (valid while :attr:`held`)."""
        self._valid_until = 0.0
        self._last_try = 0.0
        self._observed: tuple | None = None
        self._observed_at = 0.0

    @property
    def held(self) -> bool:
        """True while this candidate leads (renewed within renew_seconds)."""
        return time.monotonic() < self._valid_until

    def acquire(self, timeout: float | None = None) -> bool:
        """Block until this candidate leads or ``timeout`` seconds pass (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        announced = False
        while True:
            holder = self._try()
            if holder is None:
                log.info("leading: lease %s of %s held by %s (token %d)", keys.controller_lease(),
                         self.store.url, self.identity, self.token)
                return True
            if not announced:
                log.info("waiting for lease %s of %s (held by %s)", keys.controller_lease(), self.store.url, holder)
                announced = True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(self.retry_seconds)

    def renew(self) -> None:
        """Renew the lease if a retry interval has passed (cheap to call
        often); :attr:`held` turns False once renewals fail for too long."""
        if time.monotonic() - self._last_try >= self.retry_seconds:
            self._try()

    def release(self) -> None:
        """Hand the lease back if leading (empty holder), so a successor
        need not wait for it to expire."""
        if not self.held:
            return
        self._valid_until = 0.0
        try:
            data, version = self.store.read_versioned(keys.controller_lease())
            record = LeaseRecord.from_json(data)
            if record.holder == self.identity:
                record.holder = ""
                self.store.write(keys.controller_lease(), record.to_json(), if_match=version)
                log.info("released the controller lease")
        except PipectlError as e:
            log.warning("could not release the controller lease: %s", e)

    def _try(self) -> str | None:
        """One attempt to take or renew the lease: None if held now, else
        the holder's identity."""
        attempt = self._last_try = time.monotonic()
        try:
            try:
                data, version = self.store.read_versioned(keys.controller_lease())
                record = LeaseRecord.from_json(data)
            except NotFound:
                record, version = LeaseRecord(), None
            observed = (record.holder, record.token, record.renewed)
            if observed != self._observed:
                self._observed, self._observed_at = observed, attempt
            ours = record.holder == self.identity and record.token == self.token
            if record.holder and not ours and attempt < self._observed_at + record.seconds \
                    and not _gone(record.holder):
                self._valid_until = 0.0
                return record.holder  # someone else leads and renews
            if not ours:
                record = LeaseRecord(self.identity, record.token + 1)
            record.renewed, record.seconds = now(), self.lease_seconds
            if version is None:
                self.store.write(keys.controller_lease(), record.to_json(), if_absent=True)
            else:
                self.store.write(keys.controller_lease(), record.to_json(), if_match=version)
        except PreconditionFailed:
            return "another candidate"
        except PipectlError as e:  # store unreachable: try again later
            log.warning("controller lease: %s", e)
            return "unknown (store unreachable)"
        self.token = record.token
        self._valid_until = attempt + self.renew_seconds
        return None
