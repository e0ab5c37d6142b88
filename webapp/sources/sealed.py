"""Upstream secrets typed in the web UI, stored encrypted in ``sources.encrypted_credentials``.

The column holds one Fernet token (AES-128-CBC with an HMAC, from the ``cryptography``
package) of a JSON map from credential field to secret (``{"api_key_env": "…"}``). The key
comes from ``TASKDECK_SECRETS_KEY``, never from the database, so a copy of the database alone
gives no secret away. Make a key with::

    python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"

Several comma-separated keys rotate: the first encrypts, every one decrypts, and a stored value
that only an older key opens is encrypted again with the first when the app loads it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.fernet import Fernet
from cryptography.fernet import InvalidToken
from cryptography.fernet import MultiFernet
from flask import Flask
from flask import current_app

from webapp.config import ConfigError
from webapp.logs import redactor

SETTING = "TASKDECK_SECRETS_KEY"
MAKE_A_KEY = (
    'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
)
EXTENSION_KEY = "taskdeck.secrets_box"


class SealedCredentialsError(Exception):
    """Stored secrets that cannot be opened: no key configured, or not the key they were
    sealed with. The message names neither the secrets nor the key."""


@dataclass(frozen=True)
class SecretsBox:
    """The configured keys: :attr:`primary` seals, :attr:`keys` open (any of them)."""

    primary: Fernet
    keys: MultiFernet

    def seal(self, values: Mapping[str, str]) -> str:
        return self.primary.encrypt(json.dumps(dict(values), sort_keys=True).encode()).decode()

    def open(self, token: str) -> dict[str, str]:
        """The secrets in ``token``; raises :class:`SealedCredentialsError`."""
        try:
            data = json.loads(self.keys.decrypt(token.encode()))
        except (InvalidToken, ValueError):
            raise SealedCredentialsError(
                f"its stored secrets cannot be decrypted with {SETTING} (sealed with another "
                "key? keep the old key after the new one while rotating)"
            ) from None
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in data.items()
        ):
            raise SealedCredentialsError("its stored secrets are not a map of text values")
        return data

    def is_current(self, token: str) -> bool:
        """Whether the first key opens ``token`` (else it is sealed again with it)."""
        try:
            self.primary.decrypt(token.encode())
        except InvalidToken:
            return False
        return True


def parse_keys(value: object) -> SecretsBox | None:
    """The box for ``TASKDECK_SECRETS_KEY`` (comma-separated keys), or ``None`` when unset;
    raises :class:`ConfigError` for a value that is not Fernet keys (without echoing it)."""
    if value is None or value == "":
        return None
    keys = [part.strip() for part in str(value).split(",") if part.strip()]
    try:
        fernets = [Fernet(key) for key in keys]
    except (ValueError, TypeError):
        raise ConfigError(
            f"{SETTING}: not a Fernet key (32 url-safe base64-encoded bytes; several are "
            f"separated by commas). Make one with: {MAKE_A_KEY}"
        ) from None
    if not fernets:
        return None
    return SecretsBox(primary=fernets[0], keys=MultiFernet(fernets))


def secrets_box(app: Flask | None = None) -> SecretsBox | None:
    """The running app's box, or ``None`` when no key is configured."""
    target = app if app is not None else current_app
    box: SecretsBox | None = target.extensions.get(EXTENSION_KEY)
    return box


def open_sealed(token: str | None, box: SecretsBox | None) -> dict[str, str]:
    """The secrets a source row stores (none for ``None``); raises
    :class:`SealedCredentialsError` when they cannot be opened."""
    if not token:
        return {}
    if box is None:
        raise SealedCredentialsError(
            f"its secrets are stored encrypted, and {SETTING} is not set to open them"
        )
    return box.open(token)


def init_app(app: Flask) -> None:
    box = parse_keys(app.config.get("SECRETS_KEY"))
    if box is not None:
        redactor.add(str(app.config["SECRETS_KEY"]).split(","))
    app.extensions[EXTENSION_KEY] = box
