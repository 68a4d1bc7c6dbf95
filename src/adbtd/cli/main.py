"""The operator CLI: ``adbtd serve``, ``db upgrade``, workspaces, keys, orders, mailboxes, IPs.

Every command builds settings from ``ADBTD_*`` variables, so it works on the same database as a
running ``serve``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from adbtd.db.migrate import upgrade
from adbtd.errors import AdbtdError, ValidationFailed
from adbtd.runtime import Runtime
from adbtd.services import api_keys, billing, inventory, mailboxes, orders, workspaces
from adbtd.settings import Settings, build_settings, check_node_name

app = typer.Typer(
    help="Operate an adbtd platform.", no_args_is_help=True, pretty_exceptions_enable=False
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
workspaces_app = typer.Typer(help="Workspaces (tenants).", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(workspaces_app, name="workspaces")
app.add_typer(keys_app, name="keys")
orders_app = typer.Typer(help="Orders (provisioning).", no_args_is_help=True)
mailboxes_app = typer.Typer(help="Mailboxes.", no_args_is_help=True)
ips_app = typer.Typer(help="Dedicated IP inventory.", no_args_is_help=True)
app.add_typer(orders_app, name="orders")
app.add_typer(mailboxes_app, name="mailboxes")
app.add_typer(ips_app, name="ips")
mailnode_app = typer.Typer(help="The mail node (Postfix, Dovecot, OpenDKIM).", no_args_is_help=True)
app.add_typer(mailnode_app, name="mailnode")

T = TypeVar("T")


def load_settings() -> Settings:
    try:
        return build_settings()
    except ValueError as exc:
        typer.echo(f"error: invalid settings: {exc}", err=True)
        raise typer.Exit(2) from exc


def open_runtime() -> Runtime:
    """Settings, then the database migrated to the newest schema."""
    settings = load_settings()
    runtime = Runtime.from_settings(settings)
    upgrade(settings.resolved_database_url)
    return runtime


def run_service(action: Callable[[Runtime], T]) -> T:
    """Run one service call in a transaction; expected errors print cleanly and exit 1."""
    runtime = open_runtime()
    try:
        return action(runtime)
    except AdbtdError as exc:
        typer.echo(f"error: {exc.code}: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    finally:
        runtime.close()


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=True))


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Listen address (default from settings).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default from settings).")] = None,
) -> None:
    """Run the API, dashboard, worker and local mail node on one machine."""
    from adbtd.cli.serve import run_server

    settings = load_settings()
    overrides: dict[str, Any] = {}
    if host:
        overrides["http_host"] = host
    if port:
        overrides["http_port"] = port
    run_server(settings.model_copy(update=overrides))


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the newest schema."""
    settings = load_settings()
    upgrade(settings.resolved_database_url)
    typer.echo("database is at the newest schema")


@workspaces_app.command("create")
def workspaces_create(
    slug: str,
    name: Annotated[str, typer.Option(help="Display name.")],
    payment_method: Annotated[
        bool, typer.Option("--payment-method", help="Record a local test payment method.")
    ] = False,
) -> None:
    """Create a workspace and print it as JSON."""

    def action(runtime: Runtime) -> dict[str, Any]:
        with runtime.db.transaction() as session:
            ws = workspaces.create_workspace(
                session, slug=slug, name=name, billing_provider=runtime.settings.billing_provider
            )
            method = None
            if payment_method:
                method = billing.record_payment_method(session, workspace_id=ws.id)
            return {
                "id": ws.id,
                "slug": ws.slug,
                "name": ws.name,
                "currency": ws.currency,
                "paymentMethod": method,
            }

    print_json(run_service(action))


@keys_app.command("create")
def keys_create(slug: str, name: Annotated[str, typer.Option(help="Key name.")]) -> None:
    """Create an API key; the token is printed alone on the last line, once."""

    def action(runtime: Runtime) -> tuple[str, str, str]:
        with runtime.db.transaction() as session:
            ws = workspaces.get_workspace_by_slug(session, slug)
            created = api_keys.create_key(session, workspace_id=ws.id, name=name)
            return created.key.id, created.key.display_prefix, created.token

    key_id, prefix, token = run_service(action)
    typer.echo(
        f"created key {key_id} (prefix {prefix}); store this token now, it is not shown again:",
        err=True,
    )
    typer.echo(token)


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke an API key; its next request is refused."""

    def action(runtime: Runtime) -> str:
        with runtime.db.transaction() as session:
            return api_keys.revoke_key(session, key_id=key_id).id

    typer.echo(f"revoked {run_service(action)}")


@mailnode_app.command("run")
def mailnode_run() -> None:
    """Run a mail node alone (reconciler + daemons) against the shared database."""
    from adbtd.cli.serve import run_until_signalled
    from adbtd.workers.mailnode import DatabaseMailNode

    runtime = open_runtime()
    try:
        run_until_signalled([DatabaseMailNode(runtime)], "mail node")
    finally:
        runtime.close()


@orders_app.command("create")
def orders_create(
    slug: str,
    domain: Annotated[str, typer.Option(help="The workspace's first domain.")],
    ips: Annotated[int, typer.Option("--ips", help="Dedicated IPs to reserve (1-10).")] = 1,
    mailbox: Annotated[
        list[str] | None, typer.Option("--mailbox", help="A mailbox on the domain (repeat).")
    ] = None,
    mode: Annotated[str, typer.Option(help="byo (bring your own) or buy.")] = "byo",
) -> None:
    """Place a workspace's first order (domain + IPs + mailboxes) and print it as JSON."""

    def action(runtime: Runtime) -> dict[str, Any]:
        with runtime.db.transaction() as session:
            inventory.sync_pool(
                session, ip_pool=runtime.settings.ip_pool, node=runtime.settings.node_name
            )
            ws = workspaces.get_workspace_by_slug(session, slug)
            placed = orders.place_first_order(
                session,
                workspace_id=ws.id,
                domain=domain,
                mode=mode,
                ip_count=ips,
                emails=list(mailbox or []),
                settings=runtime.settings,
            )
        return {
            "orderId": placed.order_id,
            "status": placed.status,
            "domain": placed.domain,
            "mode": placed.mode,
            "ips": placed.ips,
            "emails": placed.emails,
        }

    print_json(run_service(action))


@mailboxes_app.command("password")
def mailboxes_password(email: str) -> None:
    """Print a mailbox's password, alone, on the last line."""

    def action(runtime: Runtime) -> str:
        with runtime.db.transaction() as session:
            return mailboxes.mailbox_password(
                session, email=email, secret_key=runtime.settings.secret_key
            )

    typer.echo(run_service(action))


@ips_app.command("add")
def ips_add(
    items: Annotated[list[str], typer.Argument(help="Addresses, a-b ranges or CIDRs.")],
    node: Annotated[
        str | None,
        typer.Option(help="The mail node that binds them (default: ADBTD_NODE_NAME)."),
    ] = None,
) -> None:
    """Add addresses to the dedicated IP inventory (already known ones are left alone)."""

    def action(runtime: Runtime) -> tuple[str, inventory.AddedAddresses]:
        try:
            owner = check_node_name(node) if node is not None else runtime.settings.node_name
        except ValueError as exc:
            raise ValidationFailed(f"--node: {exc}") from exc
        with runtime.db.transaction() as session:
            return owner, inventory.add_addresses(session, items=items, node=owner)

    owner, result = run_service(action)
    typer.echo(
        f"added {len(result.added)} address(es) on node {owner}; "
        f"{len(result.already_present)} already in the inventory"
    )


@app.command()
def worker(
    poll_seconds: Annotated[float, typer.Option(help="Queue poll interval.")] = 0.5,
    lease_seconds: Annotated[
        float, typer.Option(help="How long a claimed order is ours before others may retry it.")
    ] = 60.0,
    once: Annotated[bool, typer.Option("--once", help="Drain the queue, then exit.")] = False,
    pause_before_apply: Annotated[float, typer.Option(hidden=True)] = 0.0,
) -> None:
    """Run the order worker in the foreground (``serve`` runs one too, by default)."""
    from adbtd.workers.orders import OrderWorker

    runtime = open_runtime()
    order_worker = OrderWorker(
        runtime,
        poll_seconds=poll_seconds,
        lease_seconds=lease_seconds,
        pause_before_apply=pause_before_apply,
    )
    try:
        if once:
            typer.echo(f"processed {order_worker.drain()} order(s)")
            return
        from adbtd.cli.serve import run_until_signalled

        run_until_signalled([order_worker], "order worker")
    finally:
        runtime.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    app()


if __name__ == "__main__":
    main()
