"""The dashboard (server-rendered, at ``/dashboard``) and the billing provider's webhooks."""

from adbtd.dashboard.app import create_dashboard
from adbtd.dashboard.webhooks import webhook_router

__all__ = ["create_dashboard", "webhook_router"]
