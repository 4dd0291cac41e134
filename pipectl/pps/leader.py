"""Leader election on a Kubernetes Lease, so that of several controller
replicas exactly one runs jobs.

The algorithm is client-go's ``tools/leaderelection`` with a
``coordination.k8s.io/v1`` Lease as the lock:

- a candidate reads the Lease; it may take it when no one holds it, or when
  the record (holder, renew time) has not changed for ``lease_seconds`` *as
  observed on the candidate's own clock* (so clock skew between nodes does
  not matter); it writes itself in as holder with the Lease's
  resourceVersion, so of two candidates racing, the API server accepts one
  (the other gets 409 Conflict);
- the leader renews every ``retry_seconds``; if it has not renewed for
  ``renew_seconds`` (< ``lease_seconds``) it stops leading (``held`` turns
  False) before anyone else can take over;
- on shutdown it releases the Lease (empty holder), so a successor takes
  over at its next try instead of waiting for expiry.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from typing import Any

log = logging.getLogger("pipectl.leader")


class LeaseElector:
    """Campaigns for Lease ``name`` in ``namespace`` as ``identity`` (e.g. the
    pod name). Durations in seconds. The kubernetes client must be
    configured first (see ``executors.kubernetes.load_client_config``)."""

    def __init__(self, namespace: str, name: str, identity: str, lease_seconds: float = 15,
                 renew_seconds: float = 10, retry_seconds: float = 2):
        from kubernetes import client
        if not renew_seconds < lease_seconds:
            raise ValueError("renew_seconds must be shorter than lease_seconds")
        self.api = client.CoordinationV1Api()
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_seconds, self.renew_seconds, self.retry_seconds = lease_seconds, renew_seconds, retry_seconds
        self._valid_until = 0.0  # monotonic time until which we lead
        self._observed: tuple | None = None  # (holder, renew time) last read
        self._observed_at = 0.0
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @property
    def held(self) -> bool:
        """True while this candidate leads (renewed within renew_seconds)."""
        return time.monotonic() < self._valid_until

    def acquire(self, timeout: float | None = None) -> bool:
        """Block until this candidate leads (then keep renewing in the
        background) or ``timeout`` seconds pass (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        announced = False
        while not self._stop.is_set():
            if self._try():
                log.info("leading: lease %s/%s held by %s", self.namespace, self.name, self.identity)
                self._renewer = threading.Thread(target=self._renew_loop, name="lease-renew", daemon=True)
                self._renewer.start()
                return True
            if not announced:
                log.info("waiting for lease %s/%s (held by %s)", self.namespace, self.name,
                         self._observed[0] if self._observed else "?")
                announced = True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            self._stop.wait(self.retry_seconds)
        return False

    def renew(self) -> None:
        """Nothing to do: a thread of its own renews the Lease (see :meth:`acquire`)."""

    def release(self) -> None:
        """Stop renewing and, if leading, hand the Lease back (empty holder).
        A renewal in flight is waited for (up to ``renew_seconds``), and one
        that returns after the release does not make this candidate lead
        again (a write it makes after the release's is refused by the API
        server: its resourceVersion is stale)."""
        from kubernetes.client.exceptions import ApiException
        self._stop.set()
        if self._renewer is not None and self._renewer is not threading.current_thread():
            self._renewer.join(self.renew_seconds)
        if not self.held:
            return
        self._valid_until = 0.0
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
            spec: Any = lease.spec
            if spec.holder_identity == self.identity:
                spec.holder_identity = None
                spec.lease_duration_seconds = 1
                self.api.replace_namespaced_lease(self.name, self.namespace, lease)
                log.info("released lease %s/%s", self.namespace, self.name)
        except ApiException as e:
            log.warning("could not release lease %s/%s: %s", self.namespace, self.name, e.reason)

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.retry_seconds):
            if not self._try() and not self.held:
                log.error("lost lease %s/%s", self.namespace, self.name)
                return

    def _try(self) -> bool:
        """One attempt to take or renew the Lease. True if we hold it now."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException
        attempt = time.monotonic()
        now = datetime.datetime.now(datetime.UTC)
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as e:
            if e.status != 404:
                log.warning("reading lease %s/%s: %s", self.namespace, self.name, e.reason)
                return False
            body = client.V1Lease(metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                                  spec=client.V1LeaseSpec(holder_identity=self.identity, acquire_time=now,
                                                          renew_time=now, lease_transitions=0,
                                                          lease_duration_seconds=int(self.lease_seconds)))
            return self._write(self.api.create_namespaced_lease, attempt, self.namespace, body)
        except Exception as e:  # API server unreachable: try again later
            log.warning("reading lease %s/%s: %s", self.namespace, self.name, e)
            return False
        spec: Any = lease.spec
        record = (spec.holder_identity, spec.renew_time)
        if record != self._observed:
            self._observed, self._observed_at = record, attempt
        ours = spec.holder_identity == self.identity
        if spec.holder_identity and not ours:
            duration = spec.lease_duration_seconds or self.lease_seconds
            if attempt < self._observed_at + duration:
                return False  # someone else leads and renews
        if not ours:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
        spec.holder_identity = self.identity
        spec.renew_time = now
        spec.lease_duration_seconds = int(self.lease_seconds)
        return self._write(self.api.replace_namespaced_lease, attempt, self.name, self.namespace, lease)

    def _write(self, call, attempt: float, *args) -> bool:
        from kubernetes.client.exceptions import ApiException
        try:
            call(*args)
        except ApiException as e:
            if e.status != 409:  # 409: another candidate wrote first
                log.warning("writing lease %s/%s: %s", self.namespace, self.name, e.reason)
            return False
        except Exception as e:
            log.warning("writing lease %s/%s: %s", self.namespace, self.name, e)
            return False
        if not self._stop.is_set():  # a renewal that ends after release() leads no more
            self._valid_until = attempt + self.renew_seconds
        return True
