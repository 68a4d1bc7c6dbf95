"""What every FastAPI application of adbtd (API, dashboard, their root) is built with."""

from __future__ import annotations

from fastapi.telemetry import TelemetryConfig

# No OpenTelemetry here: spare FastAPI its per-request check for a configured provider.
NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
