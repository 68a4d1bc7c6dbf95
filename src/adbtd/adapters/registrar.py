"""The registrar port for ``mode=buy`` domains, and the local provider used by default.

A registrar registers a name for the platform; afterwards the domain is *managed*: its DNS
records are the platform's to publish. ``register`` must be idempotent for a name we already
registered, because a worker that dies after registering retries the whole order.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol


class RegistrationFailed(Exception):
    """The registrar refused the name for good (taken, unsupported TLD, ...)."""


@dataclass(frozen=True, slots=True)
class Registration:
    name: str
    registrar_ref: str


class Registrar(Protocol):
    def register(self, name: str) -> Registration:
        """Register ``name`` (or confirm we already hold it); raise ``RegistrationFailed``."""
        ...


class LocalRegistrar:
    """Registers every name at once; ``refuse`` lists names it treats as taken (for tests)."""

    def __init__(self, refuse: frozenset[str] = frozenset()) -> None:
        self._refuse = refuse
        self._lock = threading.Lock()
        self._held: set[str] = set()

    def register(self, name: str) -> Registration:
        if name in self._refuse:
            raise RegistrationFailed(f"{name} is not available for registration")
        with self._lock:
            self._held.add(name)
        return Registration(name=name, registrar_ref=f"local:{name}")


def registrar_for(provider: str = "local") -> Registrar:
    """The registrar of this deployment (only the local one exists so far)."""
    if provider != "local":
        raise ValueError(f"unknown registrar provider {provider!r}")
    return LocalRegistrar()
