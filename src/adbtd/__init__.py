"""adbtd: a multi-tenant email platform on real Postfix, Dovecot and OpenDKIM."""

__version__ = "0.1.0"
__all__ = ["__version__"]
