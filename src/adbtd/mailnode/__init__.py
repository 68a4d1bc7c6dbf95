"""The mail node: renders tenants' state into Postfix/Dovecot/OpenDKIM files, applies them and
supervises the daemons. See docs/mailnode.md."""

from adbtd.mailnode.apply import ChangeSet, Daemon, apply_files
from adbtd.mailnode.keys import (
    dkim_public_record,
    generate_dkim_key,
    generate_mailbox_password,
    hash_mailbox_password,
)
from adbtd.mailnode.node import MailNode, build_node_config
from adbtd.mailnode.reconciler import Reconciler
from adbtd.mailnode.render import RenderedFile, RenderError, render_node
from adbtd.mailnode.state import NodeConfig, NodeDomain, NodeMailbox, NodeState

__all__ = [
    "ChangeSet",
    "Daemon",
    "MailNode",
    "NodeConfig",
    "NodeDomain",
    "NodeMailbox",
    "NodeState",
    "Reconciler",
    "RenderError",
    "RenderedFile",
    "apply_files",
    "build_node_config",
    "dkim_public_record",
    "generate_dkim_key",
    "generate_mailbox_password",
    "hash_mailbox_password",
    "render_node",
]
