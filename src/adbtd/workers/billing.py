"""Push subscription quantities to the billing provider after changes, off the request path.

Routes and the order worker call ``Runtime.quantities_changed(workspace_id)`` after commit; this
worker pushes in the background, retries failures with a growing delay, and sweeps every
workspace with a payment method on a schedule, so a push lost to a crash is made later.
Pushes are idempotent (``billing_flows.quantity_key``), so pushing twice never charges twice.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time

from sqlalchemy import select

from adbtd.adapters.billing import BillingProvider, make_billing_provider
from adbtd.db.models import BillingAccount
from adbtd.runtime import Runtime
from adbtd.services import billing_flows
from adbtd.workers.background import BackgroundLoop

log = logging.getLogger("adbtd.billing")

RETRY_BASE_SECONDS = 5.0
RETRY_MAX_SECONDS = 600.0


class BillingPusher(BackgroundLoop):
    """A thread with a due-time queue of workspaces whose quantities must reach the provider."""

    thread_name = "billing-pusher"
    join_seconds = 15.0

    def __init__(
        self,
        runtime: Runtime,
        *,
        provider: BillingProvider | None = None,
        sweep_seconds: float = 3600.0,
    ) -> None:
        super().__init__()
        self.runtime = runtime
        self.provider = provider or make_billing_provider(runtime.settings)
        self.sweep_seconds = sweep_seconds
        self._queue: list[tuple[float, str, int]] = []  # (due, workspace id, failures)
        self._lock = threading.Lock()
        self._next_sweep = time.monotonic() + sweep_seconds

    def notify(self, workspace_id: str) -> None:
        self._schedule(workspace_id, 0.0, failures=0)

    def start(self) -> None:
        self.runtime.quantities_changed = self.notify
        super().start()

    def push_due(self) -> int:
        """Push every workspace whose time has come; returns how many pushes succeeded."""
        pushed = 0
        while (item := self._pop_due()) is not None:
            _due, workspace_id, failures = item
            try:
                billing_flows.push_quantities(
                    self.runtime.db,
                    self.provider,
                    self.runtime.settings,
                    workspace_id=workspace_id,
                )
                pushed += 1
            except Exception:
                delay = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2**failures)
                log.exception("billing push for %s failed; retry in %.0f s", workspace_id, delay)
                self._schedule(workspace_id, delay, failures=failures + 1)
        return pushed

    def sweep(self) -> None:
        """Queue every workspace with a payment method (the safety net for lost pushes)."""
        with self.runtime.db.transaction() as session:
            ids = list(
                session.scalars(
                    select(BillingAccount.workspace_id).where(
                        BillingAccount.payment_method_ref.is_not(None)
                    )
                )
            )
        for workspace_id in ids:
            self.notify(workspace_id)

    def run(self) -> None:
        while not self._stop.is_set():
            if time.monotonic() >= self._next_sweep:
                self._next_sweep = time.monotonic() + self.sweep_seconds
                try:
                    self.sweep()
                except Exception:
                    log.exception("billing sweep failed")
            self.push_due()
            self.nap(self._seconds_to_next())

    def _schedule(self, workspace_id: str, delay: float, *, failures: int) -> None:
        with self._lock:
            heapq.heappush(self._queue, (time.monotonic() + delay, workspace_id, failures))
        self.wake()

    def _pop_due(self) -> tuple[float, str, int] | None:
        with self._lock:
            if self._queue and self._queue[0][0] <= time.monotonic():
                item = heapq.heappop(self._queue)
                # Several queued pushes of one workspace collapse into this one.
                self._queue = [q for q in self._queue if q[1] != item[1] or q[2] > 0]
                heapq.heapify(self._queue)
                return item
            return None

    def _seconds_to_next(self) -> float:
        with self._lock:
            first = self._queue[0][0] if self._queue else self._next_sweep
        return max(0.05, min(first, self._next_sweep) - time.monotonic())
