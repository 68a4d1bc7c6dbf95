"""The order worker: claims one pending order at a time and provisions it.

Runs as a thread inside ``adbtd serve`` (``start``/``stop``; the API calls ``wake`` after
placing an order) or in the foreground as ``adbtd worker``. Each order goes claim → plan →
make keys and passwords (no transaction open) → complete, all-or-nothing; see
``adbtd.services.provisioning`` for why a killed worker leaves nothing half-done.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time

from adbtd.adapters.registrar import Registrar, RegistrationFailed, registrar_for
from adbtd.db.models import Order
from adbtd.mailnode.keys import generate_dkim_key, generate_mailbox_password, hash_mailbox_password
from adbtd.runtime import Runtime
from adbtd.services import provisioning
from adbtd.services.provisioning import OrderFailed, OrderPlan, Provisioned
from adbtd.workers.background import BackgroundLoop

log = logging.getLogger("adbtd.worker")

DEFAULT_POLL_SECONDS = 0.5
DEFAULT_LEASE_SECONDS = 60.0
MAX_ATTEMPTS = 5
RETRY_BASE_SECONDS = 2.0


class ClaimLost(Exception):
    """Another worker took the order over (our lease ran out): leave it to them."""


def new_worker_id() -> str:
    """Unique per worker: host, process and a random tail (threads of one process differ)."""
    return f"{worker_host()}:{os.getpid()}:{secrets.token_hex(4)}"


def worker_host() -> str:
    return socket.gethostname()[:30].replace(":", "-")


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (signal 0 only asks)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


class OrderWorker(BackgroundLoop):
    """Provision orders from the queue until stopped."""

    thread_name = "order-worker"

    def __init__(
        self,
        runtime: Runtime,
        *,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        registrar: Registrar | None = None,
        pause_before_apply: float = 0.0,
    ) -> None:
        super().__init__()
        self.runtime = runtime
        self.worker_id = new_worker_id()
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds
        self.registrar = registrar or registrar_for("local")
        self.pause_before_apply = pause_before_apply  # test hook: a window to kill the process

    def run(self) -> None:
        """Loop until ``stop``: drain the queue, then wait for a wake-up or the poll interval."""
        log.info("order worker %s started", self.worker_id)
        self.resume_dead_claims()
        while not self._stop.is_set():
            try:
                worked = self.run_once()
            except Exception:
                log.exception("order worker %s: unexpected error", self.worker_id)
                worked = False
            if not worked:
                self.nap(self.poll_seconds)
        log.info("order worker %s stopped", self.worker_id)

    def run_once(self) -> bool:
        """Claim and process one order; False when the queue had nothing to take."""
        with self.runtime.db.transaction() as session:
            order_id = provisioning.claim_next_order(
                session, worker_id=self.worker_id, lease_seconds=self.lease_seconds
            )
        if order_id is None:
            return False
        try:
            self._process(order_id)
        except ClaimLost:
            log.info("order %s: claim lost while provisioning", order_id)
        except OrderFailed as exc:
            log.warning("order %s failed: %s", order_id, exc)
            with self.runtime.db.transaction() as session:
                order = session.get(Order, order_id)
                failed = provisioning.fail_order(session, order_id=order_id, reason=str(exc))
            if failed and order is not None:
                self.runtime.quantities_changed(order.workspace_id)
        except Exception:
            log.exception("order %s: attempt failed, will retry", order_id)
            with self.runtime.db.transaction() as session:
                provisioning.retry_later(
                    session,
                    order_id=order_id,
                    worker_id=self.worker_id,
                    base_delay_seconds=RETRY_BASE_SECONDS,
                    max_attempts=MAX_ATTEMPTS,
                )
        return True

    def resume_dead_claims(self) -> list[str]:
        """Orders a killed worker of this host held are taken up now, not after their lease."""
        try:
            with self.runtime.db.transaction() as session:
                freed = provisioning.release_dead_claims(
                    session, host=worker_host(), alive=process_alive
                )
        except Exception:
            log.exception("order worker %s: could not check for dead claims", self.worker_id)
            return []
        if freed:
            log.info("resuming %d order(s) of a worker that died: %s", len(freed), ", ".join(freed))
        return freed

    def drain(self) -> int:
        """Process orders until none is left to take (tests, ``adbtd worker --once``)."""
        done = 0
        while self.run_once():
            done += 1
        return done

    def _process(self, order_id: str) -> None:
        with self.runtime.db.transaction() as session:
            plan = provisioning.plan_order(session, order_id=order_id, worker_id=self.worker_id)
        if plan is None:
            log.info("order %s: claim lost before planning", order_id)
            return
        made = self._make(plan)
        if self.pause_before_apply:
            time.sleep(self.pause_before_apply)
        with self.runtime.db.transaction() as session:
            done = provisioning.complete_order(
                session,
                order_id=order_id,
                worker_id=self.worker_id,
                made=made,
                secret_key=self.runtime.settings.secret_key,
            )
        if done:
            log.info("order %s completed (attempt %d)", order_id, plan.attempts)
            self.runtime.resources_changed(plan.workspace_id)
        else:
            log.info("order %s: claim lost before completing", order_id)

    def _keep_claim(self, order_id: str) -> None:
        with self.runtime.db.transaction() as session:
            kept = provisioning.extend_claim(
                session,
                order_id=order_id,
                worker_id=self.worker_id,
                lease_seconds=self.lease_seconds,
            )
        if not kept:
            raise ClaimLost(order_id)

    def _make(self, plan: OrderPlan) -> Provisioned:
        """The slow part: registrar calls, DKIM keys, mailbox passwords and their hashes."""
        made = Provisioned()
        for domain_id, name in plan.to_register.items():
            self._keep_claim(plan.order_id)  # a registrar may be slow: renew before each call
            try:
                self.registrar.register(name)
            except RegistrationFailed as exc:
                raise OrderFailed(str(exc)) from exc
            made.registered.add(domain_id)
        for domain_id in plan.keyless_domains:
            made.dkim_keys[domain_id] = generate_dkim_key()
        for mailbox_id in plan.passwordless_mailboxes:
            plain = generate_mailbox_password()
            made.passwords[mailbox_id] = (plain, hash_mailbox_password(plain))
        return made
