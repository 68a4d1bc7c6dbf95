"""A PowerDNS Authoritative server of our own: Debian's ``pdns_server`` with the SQLite backend.

Used by the embedded default (``ADBTD_PDNS_LOCAL=true``) and by the tests. Its config, database
and control socket live in one directory; the HTTP API and DNS listen on loopback only. Nothing
system-wide is touched (no systemd unit, no /etc/powerdns).
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

PDNS_BINARY = "/usr/sbin/pdns_server"
SCHEMA_CANDIDATES = (
    Path("/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql"),
    Path("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql"),
)
START_TIMEOUT_SECONDS = 20.0


class PowerDnsUnavailable(RuntimeError):
    """pdns_server or its SQLite schema is not installed, or it would not start."""


def pdns_installed() -> bool:
    return Path(PDNS_BINARY).exists() and any(p.exists() for p in SCHEMA_CANDIDATES)


class PowerDnsServer:
    """Start and stop one pdns_server; ``api_url`` and ``dns_address`` say where it listens."""

    def __init__(
        self,
        directory: Path,
        *,
        api_key: str,
        dns_port: int,
        api_port: int,
        address: str = "127.0.0.1",
    ) -> None:
        self.directory = directory
        self.api_key = api_key
        self.dns_port = dns_port
        self.api_port = api_port
        self.address = address
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://{self.address}:{self.api_port}"

    @property
    def dns_address(self) -> str:
        return f"{self.address}:{self.dns_port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "pdns.log"

    def write_config(self) -> None:
        """pdns.conf and an initialised SQLite database (kept across restarts)."""
        schema = next((p for p in SCHEMA_CANDIDATES if p.exists()), None)
        if not Path(PDNS_BINARY).exists() or schema is None:
            raise PowerDnsUnavailable("pdns-server and pdns-backend-sqlite3 are not installed")
        self.directory.mkdir(parents=True, exist_ok=True)
        database = self.directory / "pdns.sqlite3"
        if not database.exists():
            connection = sqlite3.connect(database)
            try:
                connection.executescript(schema.read_text())
            finally:
                connection.close()
        settings = {
            "launch": "gsqlite3",
            "gsqlite3-database": str(database),
            "local-address": self.address,
            "local-port": str(self.dns_port),
            "api": "yes",
            "api-key": self.api_key,
            "webserver": "yes",
            "webserver-address": self.address,
            "webserver-port": str(self.api_port),
            "webserver-allow-from": "127.0.0.0/8,::1",
            "socket-dir": str(self.directory),
            "security-poll-suffix": "",
            "cache-ttl": "0",
            "negquery-cache-ttl": "0",
            "query-cache-ttl": "0",
            "zone-cache-refresh-interval": "0",
            "default-soa-content": "ns.adbtd.invalid. hostmaster.@ 0 10800 3600 604800 300",
        }
        config = "".join(f"{key}={value}\n" for key, value in settings.items())
        path = self.directory / "pdns.conf"
        path.write_text(config)
        path.chmod(0o600)

    def start(self) -> None:
        self.write_config()
        log = self.log_path.open("ab")
        try:
            self._process = subprocess.Popen(
                [
                    PDNS_BINARY,
                    f"--config-dir={self.directory}",
                    "--guardian=no",
                    "--daemon=no",
                    "--disable-syslog",
                    "--write-pid=no",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        request = urllib.request.Request(  # noqa: S310 - loopback http URL
            f"{self.api_url}/api/v1/servers/localhost"
        )
        request.add_header("X-API-Key", self.api_key)
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise PowerDnsUnavailable(f"pdns_server exited: {self._log_tail()}")
            try:
                with urllib.request.urlopen(request, timeout=1):  # noqa: S310 - loopback URL
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise PowerDnsUnavailable(f"pdns_server did not answer its API: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-5:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
