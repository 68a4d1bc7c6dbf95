"""Pure syntax rules for domain names and mailbox addresses, shared by every entry point.

Names are normalized before they are stored or compared: lowercase, ASCII (IDNs in their
``xn--`` form), no trailing dot. Mailbox addresses are lowercased whole, because Postfix looks
addresses up case-insensitively and two mailboxes differing only in case could not both work.
"""

from __future__ import annotations

import re

from email_validator import EmailNotValidError, validate_email

from adbtd.errors import ValidationFailed

MAX_DOMAIN_LENGTH = 253
MAX_LABEL_LENGTH = 63
MAX_LOCAL_PART_LENGTH = 64
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_TLD = re.compile(r"^(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})$")
# Reserved names that can never carry real mail; ``test`` stays allowed for development.
RESERVED_SUFFIXES = ("arpa", "invalid", "local", "localhost", "onion")
# A hosted mailbox's local part is also a directory and a passwd-file key on the mail node.
_MAILBOX_LOCAL = re.compile(r"^[a-z0-9_+-](?:[a-z0-9._+-]{0,62}[a-z0-9_+-])?$")


def normalize_domain_name(raw: str) -> str:
    """Return the lowercase FQDN, or raise ``ValidationFailed`` saying what is wrong."""
    if not isinstance(raw, str):
        raise ValidationFailed("domain name must be a string")
    name = raw.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise ValidationFailed("domain name is empty")
    if not name.isascii():
        raise ValidationFailed("domain name must be ASCII; write an IDN in its xn-- form")
    if len(name) > MAX_DOMAIN_LENGTH:
        raise ValidationFailed(f"domain name is longer than {MAX_DOMAIN_LENGTH} characters")
    labels = name.split(".")
    if len(labels) < 2:
        raise ValidationFailed("domain name needs at least two labels, e.g. acme.com")
    for label in labels:
        if not label:
            raise ValidationFailed("domain name has an empty label")
        if len(label) > MAX_LABEL_LENGTH:
            raise ValidationFailed(f"a domain label is longer than {MAX_LABEL_LENGTH} characters")
        if not _LABEL.fullmatch(label):
            raise ValidationFailed("domain labels hold letters, digits and inner hyphens only")
    if not _TLD.fullmatch(labels[-1]):
        raise ValidationFailed("the last label of a domain name must be alphabetic")
    if labels[-1] in RESERVED_SUFFIXES:
        raise ValidationFailed(f"{labels[-1]!r} is a reserved top-level name")
    return name


def normalize_email(raw: str) -> str:
    """Return the lowercase address ``local@domain``, or raise ``ValidationFailed``."""
    if not isinstance(raw, str):
        raise ValidationFailed("email must be a string")
    local, at, domain_part = raw.rpartition("@")
    if not at or not local:
        raise ValidationFailed(f"{_shown(raw)} is not an email address")
    try:
        domain = normalize_domain_name(domain_part)
    except ValidationFailed as exc:
        raise ValidationFailed(f"{_shown(raw)}: {exc.message}") from exc
    if len(local) > MAX_LOCAL_PART_LENGTH:
        raise ValidationFailed(f"{_shown(raw)}: the part before @ is too long")
    try:
        checked = validate_email(
            f"{local}@{domain}",
            check_deliverability=False,
            allow_smtputf8=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
            test_environment=True,
            strict=True,
        )
    except EmailNotValidError as exc:
        raise ValidationFailed(f"{_shown(raw)}: {exc}") from exc
    return f"{checked.local_part.lower()}@{domain}"


def normalize_mailbox_address(raw: str) -> str:
    """A hosted mailbox: a valid address whose local part is letters, digits, . _ + and -."""
    email = normalize_email(raw)
    if not _MAILBOX_LOCAL.fullmatch(email.rpartition("@")[0]):
        raise ValidationFailed(
            f"{_shown(raw)}: a mailbox name holds letters, digits, '.', '_', '+' and '-' only"
        )
    return email


def normalize_emails(raw: list[str]) -> list[str]:
    """Normalize a request's mailbox addresses; the same one twice is a 400, not a merge."""
    emails = [normalize_mailbox_address(item) for item in raw]
    seen: set[str] = set()
    for email in emails:
        if email in seen:
            raise ValidationFailed(f"{email} appears more than once in the request")
        seen.add(email)
    return emails


def email_domain(email: str) -> str:
    """The domain part of a normalized address."""
    return email.rpartition("@")[2]


def _shown(raw: str) -> str:
    """A bounded, printable echo of user input for an error message."""
    text = raw if len(raw) <= 80 else raw[:77] + "..."
    return repr(text)
