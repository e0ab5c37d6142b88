"""A small OpenID Connect provider for the tests, served over real HTTP on loopback.

It does what Taskdeck needs of a provider, and checks what a real one checks: discovery
(``/.well-known/openid-configuration``), ``/authorize`` (signs in :attr:`user` at once, as if
they had consented, and sends the browser back with a code and the state), ``/token`` (the
client's secret, the code, the redirect URI and the PKCE verifier; answers an RS256-signed ID
token carrying the nonce), ``/jwks`` and ``/userinfo``.

Tests turn its knobs to misbehave: :attr:`deny` answers ``/authorize`` with an error,
:attr:`id_token_changes` alters the ID token's claims, :attr:`sign_with` signs it with another
key, :attr:`omit_id_token` leaves it out, :attr:`token_page_instead` answers ``/token`` with an
HTML page.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from urllib.parse import urlencode

from flask import Flask
from flask import Response
from flask import jsonify
from flask import redirect
from flask import request
from joserfc import jwt
from joserfc.jwk import RSAKey

from webapp.simulators.server import ServerThread

KEY_ID = "test-key-1"


def new_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": KEY_ID, "use": "sig", "alg": "RS256"})


@dataclass
class ProviderUser:
    """The person the provider signs in: their subject and their other claims."""

    sub: str = "0c2a-alice"
    claims: dict[str, Any] = field(
        default_factory=lambda: {
            "preferred_username": "alice",
            "email": "alice@example.test",
            "groups": ["staff"],
        }
    )
    #: Claims given only by ``/userinfo``, not in the ID token.
    userinfo_only: tuple[str, ...] = ()


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    user: ProviderUser


class OpenIDProvider:
    """The provider; ``with OpenIDProvider(...) as provider`` serves it on a free port."""

    def __init__(
        self, client_id: str = "taskdeck-test", client_secret: str = "oidc-client-s3cret-value"
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.key = new_key()
        self.user = ProviderUser()
        #: Where ``/authorize`` may send browsers back to; ``None``: anywhere (set by tests).
        self.redirect_uri: str | None = None
        #: An error code ``/authorize`` answers with instead of signing in (``access_denied``).
        self.deny: str | None = None
        #: Claims to change in the next ID tokens (``None`` removes the claim).
        self.id_token_changes: dict[str, Any] = {}
        #: Sign ID tokens with this key instead of the published one.
        self.sign_with: RSAKey | None = None
        self.omit_id_token = False
        #: Answer ``/token`` with a gateway's HTML page and a 200.
        self.token_page_instead = False
        #: What ``/authorize`` and ``/token`` were sent, for the tests to inspect.
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[dict[str, str]] = []
        self.grants: dict[str, Grant] = {}
        self.access_tokens: dict[str, ProviderUser] = {}
        self.app = self._make_app()
        self.server = ServerThread(self.app)
        self.issuer = self.server.url

    def __enter__(self) -> OpenIDProvider:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    # -- the HTTP side -----------------------------------------------------------------------

    def _make_app(self) -> Flask:
        app = Flask("oidc_provider")
        app.add_url_rule("/.well-known/openid-configuration", view_func=self.discovery)
        app.add_url_rule("/authorize", view_func=self.authorize)
        app.add_url_rule("/token", view_func=self.token, methods=["POST"])
        app.add_url_rule("/jwks", view_func=self.jwks)
        app.add_url_rule("/userinfo", view_func=self.userinfo)
        return app

    def discovery(self) -> Response:
        return jsonify(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "userinfo_endpoint": f"{self.issuer}/userinfo",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                ],
            }
        )

    def authorize(self) -> Response:
        args = request.args.to_dict()
        self.authorize_requests.append(args)
        redirect_uri = args.get("redirect_uri", "")
        if args.get("client_id") != self.client_id:
            return Response("unknown client", status=400)
        if self.redirect_uri is not None and redirect_uri != self.redirect_uri:
            return Response("redirect_uri not registered", status=400)
        if args.get("response_type") != "code" or "openid" not in args.get("scope", "").split():
            return Response("unsupported request", status=400)
        back: dict[str, str] = {"state": args.get("state", "")}
        if self.deny:
            back.update(error=self.deny, error_description="The user said no.")
        else:
            code = secrets.token_urlsafe(16)
            self.grants[code] = Grant(
                client_id=self.client_id,
                redirect_uri=redirect_uri,
                nonce=args.get("nonce"),
                code_challenge=args.get("code_challenge"),
                code_challenge_method=args.get("code_challenge_method"),
                user=self.user,
            )
            back["code"] = code
        return redirect(f"{redirect_uri}?{urlencode(back)}", 302)

    def token(self) -> tuple[Response, int] | Response:
        form = request.form.to_dict()
        self.token_requests.append(form)
        if self.token_page_instead:
            return Response("<html><body>Gateway says hello</body></html>", mimetype="text/html")
        auth = request.authorization
        client_id, secret = (
            (auth.username, auth.password)
            if auth is not None and auth.type == "basic"
            else (form.get("client_id"), form.get("client_secret"))
        )
        if client_id != self.client_id or secret != self.client_secret:
            return jsonify({"error": "invalid_client"}), 401
        if form.get("grant_type") != "authorization_code":
            return jsonify({"error": "unsupported_grant_type"}), 400
        grant = self.grants.pop(form.get("code", ""), None)  # a code is good once
        if grant is None or grant.redirect_uri != form.get("redirect_uri"):
            return jsonify({"error": "invalid_grant"}), 400
        if not self._pkce_holds(grant, form.get("code_verifier")):
            return jsonify({"error": "invalid_grant", "error_description": "PKCE"}), 400
        access_token = secrets.token_urlsafe(24)
        self.access_tokens[access_token] = grant.user
        answer: dict[str, Any] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 300,
        }
        if not self.omit_id_token:
            answer["id_token"] = self.id_token(grant)
        return jsonify(answer)

    @staticmethod
    def _pkce_holds(grant: Grant, verifier: str | None) -> bool:
        if grant.code_challenge is None:
            return verifier is None
        if grant.code_challenge_method != "S256" or not verifier:
            return False
        digest = hashlib.sha256(verifier.encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == grant.code_challenge

    def jwks(self) -> Response:
        return jsonify({"keys": [self.key.as_dict(private=False)]})

    def userinfo(self) -> tuple[Response, int] | Response:
        auth = request.authorization
        user = self.access_tokens.get(auth.token or "") if auth and auth.type == "bearer" else None
        if user is None:
            return jsonify({"error": "invalid_token"}), 401
        return jsonify({"sub": user.sub, **user.claims})

    # -- tokens ------------------------------------------------------------------------------

    def id_token(self, grant: Grant) -> str:
        now = int(time.time())
        user = grant.user
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": user.sub,
            "aud": grant.client_id,
            "iat": now,
            "exp": now + 300,
            **{k: v for k, v in user.claims.items() if k not in user.userinfo_only},
        }
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        for name, value in self.id_token_changes.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        header = {"alg": "RS256", "kid": KEY_ID}
        return jwt.encode(header, claims, self.sign_with or self.key)
