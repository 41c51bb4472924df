"""Encrypt connection secrets at rest with the key from settings.ENCRYPTION_KEY (Fernet: AES + HMAC).

A connection may instead name where its secret lives (`env:NAME` or `file:/path`), so operators who keep
secrets in the environment or in mounted files never store them in the database at all.
"""

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


class SecretUnreadable(Exception):
    """The stored secret cannot be decrypted with the current key (the key was changed or lost)."""


def _fernet() -> Fernet:
    key = settings.ENCRYPTION_KEY
    assert key, "the settings refuse to start without an encryption key"
    return Fernet(key.encode())


def encrypt_secret(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode() if plain else ""


def decrypt_secret(token: str) -> str:
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable(
            "The stored client secret cannot be decrypted with SYNCADMIN_ENCRYPTION_KEY: enter the secret again."
        ) from None


REFERENCE_PREFIXES = ("env:", "file:")


def validate_secret_reference(reference: str) -> None:
    """Raise ValueError with a plain message when `reference` is not `env:NAME` or `file:/absolute/path`."""
    if not reference.startswith(REFERENCE_PREFIXES):
        raise ValueError("Use env:VARIABLE_NAME or file:/absolute/path.")
    target = reference.split(":", 1)[1].strip()
    if not target:
        raise ValueError("Name the environment variable or the file after the colon.")
    if reference.startswith("file:") and not Path(target).is_absolute():
        raise ValueError("The file path must be absolute.")


def read_secret_reference(reference: str) -> str:
    """Read the secret named by `env:NAME` or `file:/path`; the message names the place, never the value."""
    validate_secret_reference(reference)
    kind, target = reference.split(":", 1)
    target = target.strip()
    if kind == "env":
        value = os.environ.get(target, "")
        if not value:
            raise SecretUnreadable(f"The environment variable {target} holding the client secret is not set.")
        return value
    try:
        return Path(target).read_text().strip()
    except OSError as exc:
        raise SecretUnreadable(f"The client secret file {target} cannot be read ({exc.strerror}).") from None
