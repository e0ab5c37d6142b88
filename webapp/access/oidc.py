"""Sign-in with an OpenID Connect provider (``TASKDECK_AUTH=oidc``), through Authlib.

The flow is the authorization code flow with PKCE (S256). :func:`start_sign_in` sends the
browser to the provider with a fresh ``state`` and ``nonce``, which Authlib keeps in the
session with the PKCE verifier; :func:`finish_sign_in` takes the browser back, exchanges the
code (with the client secret and the verifier) for tokens, and has Authlib check the state, the
ID token's signature against the provider's published keys (JWKS) and the nonce. Authlib checks
the issuer and audience only when told to, so both are always passed here, with the expiry's
leeway. The person is then found by ``issuer subject`` (:mod:`webapp.access.oidc_users`).

Every failure becomes a :class:`SignInError`: 400 when this attempt is refused (the provider
said no, the state is unknown, the token does not verify), 502 when the provider cannot be
reached or answers nonsense. Each call to the provider has a timeout.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from urllib.parse import urlsplit

import requests
from authlib.integrations.base_client import MismatchingStateError
from authlib.integrations.flask_client import OAuth
from authlib.integrations.flask_client import OAuthError
from flask import Flask
from flask import current_app
from flask import request
from flask import session
from flask import url_for
from joserfc.errors import JoseError
from werkzeug.wrappers import Response

from webapp import logs
from webapp.access.roles import Role
from webapp.config import ConfigError
from webapp.config import check_url
from webapp.web.urls import local_path

logger = logging.getLogger(__name__)

EXTENSION = "taskdeck.oidc"
#: Authlib's name for the provider; also its key prefix for the flow's state in the session.
CLIENT_NAME = "oidc"
#: Where the page to return to after signing in waits while the browser is at the provider.
NEXT_KEY = "oidc_next"
DISCOVERY_PATH = "/.well-known/openid-configuration"
#: Seconds of clock difference with the provider tolerated on ``exp``, ``iat`` and ``nbf``.
LEEWAY_SECONDS = 60
#: What the provider's discovery document must give for the code flow to work.
REQUIRED_METADATA = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")


@dataclass(frozen=True)
class OidcSettings:
    """The ``TASKDECK_OIDC_*`` settings, checked."""

    #: The issuer the ID tokens must name; ``None`` when only the metadata URL is given (then
    #: the discovery document's ``issuer`` is trusted).
    issuer: str | None
    metadata_url: str
    client_id: str
    client_secret: str = field(repr=False)
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    username_claim: str = "preferred_username"
    #: A claim (a dotted path into nested objects, like ``realm_access.roles``) listing the
    #: person's groups or roles; ``None``: roles are given here, not by the provider.
    roles_claim: str | None = None
    admin_values: frozenset[str] = frozenset()
    editor_values: frozenset[str] = frozenset()
    #: The role of someone new when the provider gives none.
    default_role: Role = Role.VIEWER
    #: Shown on the sign-in button.
    provider_name: str = "OpenID Connect"
    #: The callback URL registered at the provider; ``None``: this app's own, from the request.
    redirect_uri: str | None = None
    #: Seconds each request to the provider may take.
    timeout: float = 10.0


class SignInError(Exception):
    """A sign-in that cannot finish: ``message`` is for the person, ``reason`` for the log."""

    def __init__(self, status: int, message: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.message = message
        self.reason = reason


# -- configuration ---------------------------------------------------------------------------


def text_setting(config: Mapping[str, Any], name: str, *, strip: bool = True) -> str | None:
    """A text setting as written."""
    value = config.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        # Flask reads TASKDECK_* variables as JSON where they parse, so a client id or secret
        # of digits arrives as a number (1e3 as 1000.0): the variable's own text is the value.
        value = os.environ.get(f"TASKDECK_{name}", str(value))
    return value.strip() if strip else value


def list_setting(config: Mapping[str, Any], name: str) -> tuple[str, ...]:
    """A list given as a JSON list or as text separated by commas or blanks."""
    value = config.get(name)
    if value is None or value == "":
        return ()
    items = value if isinstance(value, list | tuple) else str(value).replace(",", " ").split()
    return tuple(str(item).strip() for item in items if str(item).strip())


def _required(config: Mapping[str, Any], name: str, what: str, *, strip: bool = True) -> str:
    value = text_setting(config, name, strip=strip)
    if not value:
        raise ConfigError(f"TASKDECK_{name}: required with TASKDECK_AUTH=oidc ({what})")
    return value


def _url(name: str, value: str | None) -> str | None:
    try:
        check_url(value)
    except ValueError as exc:
        raise ConfigError(f"TASKDECK_{name}: {value!r} {exc}") from None
    return value


def load_settings(config: Mapping[str, Any]) -> OidcSettings:
    """Check the ``OIDC_*`` settings; raises :class:`ConfigError` naming the variable."""
    issuer = _url("OIDC_ISSUER", text_setting(config, "OIDC_ISSUER") or None)
    metadata_url = _url("OIDC_METADATA_URL", text_setting(config, "OIDC_METADATA_URL") or None)
    if metadata_url is None:
        if issuer is None:
            raise ConfigError(
                "TASKDECK_OIDC_ISSUER: required with TASKDECK_AUTH=oidc (the provider's issuer "
                "URL, such as https://sso.example.com/realms/main; or give its discovery "
                "document as TASKDECK_OIDC_METADATA_URL)"
            )
        metadata_url = issuer.rstrip("/") + DISCOVERY_PATH
    client_id = _required(config, "OIDC_CLIENT_ID", "the client id registered at the provider")
    client_secret = _required(
        config, "OIDC_CLIENT_SECRET", "the client secret registered at the provider", strip=False
    )
    scopes = list_setting(config, "OIDC_SCOPES")
    if "openid" not in scopes:
        raise ConfigError(f"TASKDECK_OIDC_SCOPES: must include openid (got {' '.join(scopes)!r})")
    roles_claim = text_setting(config, "OIDC_ROLES_CLAIM") or None
    admin_values = frozenset(list_setting(config, "OIDC_ADMIN_VALUES"))
    editor_values = frozenset(list_setting(config, "OIDC_EDITOR_VALUES"))
    if (admin_values or editor_values) and roles_claim is None:
        raise ConfigError(
            "TASKDECK_OIDC_ROLES_CLAIM: required with TASKDECK_OIDC_ADMIN_VALUES or "
            "TASKDECK_OIDC_EDITOR_VALUES (the claim that lists a person's groups or roles)"
        )
    try:
        default_role = Role.parse(str(config.get("DEFAULT_ROLE") or "viewer"))
    except ValueError as exc:
        raise ConfigError(f"TASKDECK_DEFAULT_ROLE: {exc}") from None
    try:
        timeout = float(config.get("OIDC_TIMEOUT") or 0)
    except (TypeError, ValueError):
        timeout = 0
    if timeout <= 0:
        raise ConfigError(
            f"TASKDECK_OIDC_TIMEOUT: {config.get('OIDC_TIMEOUT')!r} is not a number of seconds > 0"
        )
    return OidcSettings(
        issuer=issuer,
        metadata_url=metadata_url,
        client_id=client_id,
        client_secret=client_secret,
        scopes=scopes,
        username_claim=text_setting(config, "OIDC_USERNAME_CLAIM") or "preferred_username",
        roles_claim=roles_claim,
        admin_values=admin_values,
        editor_values=editor_values,
        default_role=default_role,
        provider_name=text_setting(config, "OIDC_PROVIDER_NAME")
        or urlsplit(issuer or metadata_url).hostname
        or "OpenID Connect",
        redirect_uri=_url("OIDC_REDIRECT_URI", text_setting(config, "OIDC_REDIRECT_URI") or None),
        timeout=timeout,
    )


# -- the provider ----------------------------------------------------------------------------


@dataclass(frozen=True)
class OidcClient:
    settings: OidcSettings
    #: Authlib's client for the provider (``FlaskOAuth2App``).
    remote: Any


def init_app(app: Flask) -> None:
    """In ``oidc`` mode: check the settings (a :class:`ConfigError` stops start-up), register
    the provider with Authlib and keep the client secret out of log lines. Other modes never
    read the ``OIDC_*`` settings."""
    if str(app.config.get("AUTH", "")).strip().lower() != "oidc":
        return
    settings = load_settings(app.config)
    logs.redactor.add([settings.client_secret])
    remote = OAuth(app).register(
        CLIENT_NAME,
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        server_metadata_url=settings.metadata_url,
        client_kwargs={
            "scope": " ".join(settings.scopes),
            "code_challenge_method": "S256",
            # For every request Authlib makes: discovery, keys, token and userinfo.
            "default_timeout": settings.timeout,
        },
    )
    app.extensions[EXTENSION] = OidcClient(settings, remote)


def is_enabled(app: Flask | None = None) -> bool:
    return EXTENSION in (app or current_app).extensions


def oidc_client(app: Flask | None = None) -> OidcClient:
    client: OidcClient = (app or current_app).extensions[EXTENSION]
    return client


def provider_name(app: Flask | None = None) -> str:
    return oidc_client(app).settings.provider_name


def callback_url(settings: OidcSettings) -> str:
    return settings.redirect_uri or url_for("oidc.callback", _external=True)


def start_sign_in(next_path: str | None) -> Response:
    """The redirect that sends the browser to the provider; ``next_path`` (a path on this site,
    else the task list) is where it lands once signed in."""
    client = oidc_client()
    provider_metadata(client)
    session[NEXT_KEY] = local_path(next_path)
    try:
        response: Response = client.remote.authorize_redirect(callback_url(client.settings))
    except requests.RequestException as exc:
        raise unreachable(client.settings, exc) from None
    return response


def finish_sign_in() -> tuple[dict[str, Any], str]:
    """The verified claims of the person the provider signed in (the ID token's, completed
    from the userinfo endpoint where it lacks some we use), and the page to go to next.
    Raises :class:`SignInError`."""
    client = oidc_client()
    settings = client.settings
    next_path = local_path(session.pop(NEXT_KEY, None))
    error = request.args.get("error")
    if error:
        raise provider_refused(settings, error, request.args.get("error_description"))
    metadata = provider_metadata(client)
    issuer = settings.issuer or metadata["issuer"]
    try:
        token = client.remote.authorize_access_token(
            claims_options={
                "iss": {"essential": True, "value": issuer},
                "aud": {"essential": True, "value": settings.client_id},
            },
            leeway=LEEWAY_SECONDS,
        )
        if "userinfo" not in token:
            raise SignInError(
                502,
                f"{settings.provider_name} answered without an identity token; "
                "ask your administrator to check Taskdeck's client there.",
                "the token endpoint's answer has no id_token",
            )
        claims = dict(token["userinfo"])
        if wants_userinfo(settings, claims) and metadata.get("userinfo_endpoint"):
            claims = with_userinfo(claims, client.remote.userinfo(token=token))
    except MismatchingStateError:
        raise SignInError(
            400,
            "This sign-in was not started from this browser, or it took too long. "
            "Please sign in again.",
            "the callback's state matches no sign-in started in this session",
        ) from None
    except OAuthError as exc:
        raise SignInError(
            400,
            f"{settings.provider_name} refused the sign-in ({exc.error}). Please sign in again.",
            f"the token endpoint answered {exc.error}: {exc.description}",
        ) from None
    except JoseError as exc:
        raise SignInError(
            400,
            f"The identity token from {settings.provider_name} did not pass verification, "
            "so you are not signed in. Please sign in again.",
            f"ID token refused: {type(exc).__name__}: {exc}",
        ) from None
    except (requests.RequestException, ValueError) as exc:
        # ValueError: an answer that is not the JSON object asked for (a gateway's error page
        # served with 200, keys that cannot be read).
        raise unreachable(settings, exc) from None
    return claims, next_path


def provider_metadata(client: OidcClient) -> dict[str, Any]:
    """The provider's discovery document (fetched once, then kept), checked for what the code
    flow needs and for the configured issuer."""
    settings = client.settings
    try:
        metadata: dict[str, Any] = client.remote.load_server_metadata()
    except requests.RequestException as exc:
        raise unreachable(settings, exc) from None
    missing = [name for name in REQUIRED_METADATA if not metadata.get(name)]
    if missing:
        raise misconfigured(settings, f"its discovery document lacks {', '.join(missing)}")
    if settings.issuer is not None and metadata["issuer"] != settings.issuer:
        raise misconfigured(
            settings,
            f"its discovery document names the issuer {metadata['issuer']!r}, "
            f"not {settings.issuer!r} (TASKDECK_OIDC_ISSUER)",
        )
    return metadata


def wants_userinfo(settings: OidcSettings, claims: Mapping[str, Any]) -> bool:
    """Whether the ID token lacks a claim Taskdeck uses (providers often put only the subject
    in it and the rest behind the userinfo endpoint)."""
    wanted = [settings.username_claim, "email"]
    if settings.roles_claim:
        wanted.append(settings.roles_claim.split(".")[0])
    return any(name not in claims for name in wanted)


def with_userinfo(claims: dict[str, Any], userinfo: Mapping[str, Any]) -> dict[str, Any]:
    """The ID token's claims completed with the userinfo endpoint's; the ID token's win, and
    userinfo about someone else is refused (OpenID Connect Core 5.3.2)."""
    if userinfo.get("sub") != claims.get("sub"):
        raise SignInError(
            502,
            "The identity provider gave contradicting answers, so you are not signed in.",
            f"userinfo names subject {userinfo.get('sub')!r}, the ID token {claims.get('sub')!r}",
        )
    return {**userinfo, **claims}


# -- failures --------------------------------------------------------------------------------

#: What a person can make of the provider's error codes (RFC 6749 4.1.2.1, OpenID Core 3.1.2.6).
PROVIDER_ERRORS = {
    "access_denied": "you declined, or you may not use Taskdeck there",
    "login_required": "you are not signed in there",
    "consent_required": "Taskdeck needs your consent there",
    "interaction_required": "it needs you to do something there first",
    "temporarily_unavailable": "it is busy or down for maintenance",
    "server_error": "it failed",
}


def provider_refused(settings: OidcSettings, error: str, description: str | None) -> SignInError:
    meaning = PROVIDER_ERRORS.get(error, "it answered with an error")
    return SignInError(
        400,
        f"{settings.provider_name} did not sign you in: {meaning} ({error[:64]}).",
        f"the provider answered error={error[:64]!r}: {(description or '')[:200]!r}",
    )


def unreachable(settings: OidcSettings, exc: Exception) -> SignInError:
    return SignInError(
        502,
        f"{settings.provider_name} cannot be reached or answered with an error, so signing in "
        "is not possible now. Please try again later.",
        f"request to the provider failed: {type(exc).__name__}: {exc}",
    )


def misconfigured(settings: OidcSettings, problem: str) -> SignInError:
    return SignInError(
        502,
        f"{settings.provider_name} is not set up the way Taskdeck expects, so signing in is "
        "not possible now; ask your administrator.",
        f"the provider at {settings.metadata_url} is unusable: {problem}",
    )
