"""The start/stop/wake life cycle every background component of ``serve`` shares."""

from __future__ import annotations

import threading
from typing import ClassVar


class BackgroundLoop:
    """A component whose ``run`` loops in a daemon thread until ``stop``.

    ``run`` checks ``self._stop`` and naps with ``self.nap(seconds)``, which ``wake`` cuts short.
    """

    thread_name: ClassVar[str] = "adbtd-worker"
    join_seconds: ClassVar[float] = 30.0

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        """Run ``run`` in a background thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the loop to end, then wait (bounded) for the work in hand to finish."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.join_seconds)
            self._thread = None

    def wake(self) -> None:
        """Cut the current nap short: there is work now."""
        self._wake.set()

    def nap(self, seconds: float) -> None:
        """Wait up to ``seconds`` or until woken or stopped."""
        self._wake.wait(seconds)
        self._wake.clear()
