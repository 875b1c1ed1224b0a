"""Development OpenID Connect provider: discovery, rotating JWKS, code + PKCE, tokens,
introspection (RFC 7662) and revocation (RFC 7009).

Demo users alice (trader), bob (viewer) and carol (admin) all log in with password `demo`.
Clients: `stockbot-web` (confidential, secret `web-secret`), `stockbot-mobile` (public,
PKCE), `partner-acme` (client credentials, secret `acme-secret`).

Development-only controls, never to exist in a real provider:
`POST /__dev/token` mints a token for a user or client without a login,
`POST /__keys/rotate` publishes a new signing key and signs with it,
`DELETE /__keys/{kid}` retires a key (tokens it signed stop verifying),
`POST /__keys` publishes a caller's public JWK (tests sign their own tokens with it).
"""

import base64
import binascii
import html
import secrets
from typing import Any
from urllib.parse import unquote, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from joserfc.errors import JoseError
from pydantic import BaseModel, Field

from backends.identity_realm import (
    ACCESS_TOKEN_TTL_S,
    CLIENTS,
    DEMO_PASSWORD,
    SIGNING_ALGORITHM,
    USERS,
    Client,
    GrantError,
    Realm,
)
from backends.service_app import create_service_app

SERVICE_NAME = "identity"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class DevTokenRequest(BaseModel):
    """Mint an access token without a login (development only)."""

    username: str | None = Field(None, examples=["alice"])
    client_id: str | None = Field(None, examples=["partner-acme"])
    ttl_s: int = Field(ACCESS_TOKEN_TTL_S, ge=1, le=86_400)
    scope: str | None = None


def issuer_of(request: Request) -> str:
    """The issuer is the address the provider is reached at, so one process fits any port."""
    return str(request.base_url).rstrip("/")


def _oauth_error(error: GrantError) -> JSONResponse:
    headers = dict(_NO_STORE)
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="stockbot-identity"'
    return JSONResponse(
        {"error": error.error, "error_description": error.description},
        status_code=error.status,
        headers=headers,
    )


def _client_credentials(request: Request, form: dict[str, str]) -> tuple[str | None, str | None]:
    """Client id and secret from HTTP Basic (RFC 6749 §2.3.1) or from the form body."""
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None, None
        client_id, _, secret = decoded.partition(":")
        return unquote(client_id), unquote(secret)
    return form.get("client_id"), form.get("client_secret")


async def _form(request: Request) -> dict[str, str]:
    data = await request.form()
    return {key: value for key, value in data.items() if isinstance(value, str)}


_AUTHORIZE_FIELDS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
)


def _login_page(params: dict[str, str], *, error: str | None = None) -> str:
    hidden = "\n".join(
        f'<input type="hidden" name="{name}" value="{html.escape(params.get(name, ""))}">'
        for name in _AUTHORIZE_FIELDS
        if name in params
    )
    users = ", ".join(f"{user.username} ({'/'.join(user.roles)})" for user in USERS.values())
    notice = f'<p class="error">{html.escape(error)}</p>' if error else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>stock-bot sign in</title></head>
<body>
<h1>Sign in to stock-bot</h1>
<p>Development identity provider. Demo users: {html.escape(users)}; password "demo".</p>
{notice}
<form method="post" action="/authorize">
{hidden}
<label>Username <input name="username" autocomplete="username"></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button type="submit">Sign in</button>
</form>
</body></html>"""


def _redirect_with(redirect_uri: str, params: dict[str, str]) -> RedirectResponse:
    separator = "&" if "?" in redirect_uri else "?"
    return RedirectResponse(f"{redirect_uri}{separator}{urlencode(params)}", status_code=303)


def _check_authorization_request(
    params: dict[str, str],
) -> tuple[Client, str] | Response:
    """The client and redirect URI, or the error response for a bad request.

    Errors before the redirect URI is trusted are shown here; later ones go back to the client.
    """
    client = CLIENTS.get(params.get("client_id", ""))
    redirect_uri = params.get("redirect_uri", "")
    if client is None or "authorization_code" not in client.grant_types:
        return JSONResponse(
            {"error": "invalid_request", "error_description": "unknown client_id"}, 400
        )
    if not client.accepts_redirect(redirect_uri):
        return JSONResponse(
            {"error": "invalid_request", "error_description": "redirect_uri is not registered"},
            400,
        )
    problem: tuple[str, str] | None = None
    if params.get("response_type") != "code":
        problem = ("unsupported_response_type", "only response_type=code is supported")
    elif not params.get("code_challenge"):
        problem = ("invalid_request", "PKCE is required: code_challenge is missing")
    elif params.get("code_challenge_method") != "S256":
        problem = ("invalid_request", "PKCE code_challenge_method must be S256")
    elif not set(params.get("scope", "").split()) <= client.scopes:
        problem = ("invalid_scope", "the client may not request these scopes")
    if problem is not None:
        answer = {"error": problem[0], "error_description": problem[1]}
        if "state" in params:
            answer["state"] = params["state"]
        return _redirect_with(redirect_uri, answer)
    return client, redirect_uri


def create_app(*, instance: str, seed: int) -> FastAPI:
    """The identity provider ASGI app; `seed` is unused (keys are random per process)."""
    del seed
    app = create_service_app(SERVICE_NAME, instance)
    realm = Realm()

    @app.get("/.well-known/openid-configuration")
    async def discovery(request: Request) -> dict[str, Any]:
        """OpenID Connect discovery document."""
        issuer = issuer_of(request)
        return {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/authorize",
            "token_endpoint": f"{issuer}/token",
            "userinfo_endpoint": f"{issuer}/userinfo",
            "jwks_uri": f"{issuer}/jwks",
            "introspection_endpoint": f"{issuer}/introspect",
            "revocation_endpoint": f"{issuer}/revoke",
            "end_session_endpoint": f"{issuer}/logout",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "code_challenge_methods_supported": ["S256"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [SIGNING_ALGORITHM],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "none",
            ],
            "scopes_supported": sorted(
                {scope for client in CLIENTS.values() for scope in client.scopes}
            ),
            "authorization_response_iss_parameter_supported": True,
        }

    @app.get("/jwks")
    async def jwks() -> dict[str, Any]:
        """The published signing keys."""
        return realm.keys.jwks()

    @app.get("/authorize", response_model=None)
    async def authorize(request: Request) -> Response:
        """The login form for an authorization-code request."""
        params = dict(request.query_params)
        checked = _check_authorization_request(params)
        if isinstance(checked, Response):
            return checked
        return HTMLResponse(_login_page(params), headers=_NO_STORE)

    @app.post("/authorize", response_model=None)
    async def submit_login(request: Request) -> Response:
        """Check the demo credentials and send the browser back with a code."""
        form = await _form(request)
        checked = _check_authorization_request(form)
        if isinstance(checked, Response):
            return checked
        client, redirect_uri = checked
        user = USERS.get(form.get("username", ""))
        if user is None or not secrets.compare_digest(form.get("password", ""), DEMO_PASSWORD):
            page = _login_page(form, error="Unknown user or wrong password.")
            return HTMLResponse(page, status_code=401, headers=_NO_STORE)
        code = realm.issue_code(
            client=client,
            redirect_uri=redirect_uri,
            user=user,
            scope=form.get("scope", ""),
            code_challenge=form["code_challenge"],
            nonce=form.get("nonce"),
        )
        answer = {"code": code, "iss": issuer_of(request)}
        if "state" in form:
            answer["state"] = form["state"]
        return _redirect_with(redirect_uri, answer)

    @app.post("/token", response_model=None)
    async def token(request: Request) -> Response:
        """Token endpoint: authorization_code + PKCE, rotating refresh_token, client_credentials."""
        form = await _form(request)
        grant_type = form.get("grant_type", "")
        client_id, secret = _client_credentials(request, form)
        issuer = issuer_of(request)
        try:
            if grant_type not in {"authorization_code", "refresh_token", "client_credentials"}:
                raise GrantError("unsupported_grant_type", "grant_type is not supported")
            client = realm.authenticate_client(client_id, secret, grant_type=grant_type)
            if grant_type == "authorization_code":
                answer = realm.redeem_code(
                    client=client,
                    code=form.get("code", ""),
                    redirect_uri=form.get("redirect_uri"),
                    code_verifier=form.get("code_verifier"),
                    issuer=issuer,
                )
            elif grant_type == "refresh_token":
                answer = realm.refresh(
                    client=client, refresh_token=form.get("refresh_token", ""), issuer=issuer
                )
            else:
                answer = realm.client_credentials(
                    client=client, scope=form.get("scope"), issuer=issuer
                )
        except GrantError as error:
            return _oauth_error(error)
        return JSONResponse(answer, headers=_NO_STORE)

    @app.post("/introspect", response_model=None)
    async def introspect(request: Request) -> Response:
        """RFC 7662 token introspection for registered clients."""
        form = await _form(request)
        client_id, secret = _client_credentials(request, form)
        try:
            realm.authenticate_client(client_id, secret, grant_type="")
        except GrantError as error:
            return _oauth_error(error)
        presented = form.get("token", "")
        grant = realm.refresh_grants.get(presented)
        if grant is not None:
            return JSONResponse(
                {
                    "active": True,
                    "token_type": "refresh_token",
                    "client_id": grant.client_id,
                    "sub": grant.username,
                    "scope": grant.scope,
                    "exp": int(grant.expires_at),
                },
                headers=_NO_STORE,
            )
        claims = realm.active_access_claims(presented)
        if claims is None:
            return JSONResponse({"active": False}, headers=_NO_STORE)
        return JSONResponse(
            {"active": True, "token_type": "access_token", **claims}, headers=_NO_STORE
        )

    @app.post("/revoke", response_model=None)
    async def revoke(request: Request) -> Response:
        """RFC 7009 revocation of a refresh or access token."""
        form = await _form(request)
        client_id, secret = _client_credentials(request, form)
        try:
            client = realm.authenticate_client(client_id, secret, grant_type="")
        except GrantError as error:
            return _oauth_error(error)
        realm.revoke(form.get("token", ""), client=client)
        return Response(status_code=200, headers=_NO_STORE)

    @app.get("/userinfo", response_model=None)
    async def userinfo(request: Request) -> Response:
        """Claims about the user an access token was issued for."""
        authorization = request.headers.get("authorization", "")
        scheme, _, presented = authorization.partition(" ")
        claims = realm.active_access_claims(presented) if scheme.lower() == "bearer" else None
        user = USERS.get(str(claims.get("sub"))) if claims else None
        if user is None:
            return JSONResponse(
                {"error": "invalid_token"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return JSONResponse(
            {
                "sub": user.username,
                "name": user.name,
                "email": user.email,
                "roles": list(user.roles),
                "account_ids": list(user.account_ids),
            }
        )

    @app.api_route("/logout", methods=["GET", "POST"], response_model=None)
    async def end_session(request: Request) -> Response:
        """RP-initiated logout: ends the login session named by `id_token_hint`."""
        params = dict(request.query_params)
        if request.method == "POST":
            params.update(await _form(request))
        claims = realm.keys.verify(params.get("id_token_hint", ""))
        ended = realm.end_session(str(claims["sid"])) if claims and "sid" in claims else 0
        target = params.get("post_logout_redirect_uri")
        client = CLIENTS.get(str(claims.get("aud"))) if claims else None
        if target and client is not None and client.accepts_redirect(target):
            extra = {"state": params["state"]} if "state" in params else {}
            return _redirect_with(target, extra) if extra else RedirectResponse(target, 303)
        if request.method == "POST":
            return JSONResponse({"ended_grants": ended})
        return HTMLResponse("<!doctype html><p>You are signed out of stock-bot.</p>")

    @app.get("/__keys")
    async def list_keys() -> dict[str, Any]:
        """Published key ids and the one that signs (development only)."""
        published = [*realm.keys.keys, *realm.keys.imported]
        return {"current": realm.keys.current_kid, "published": published}

    @app.post("/__keys/rotate")
    async def rotate_keys() -> dict[str, Any]:
        """Publish a new signing key and sign with it from now on (development only)."""
        kid = realm.keys.rotate()
        return {"current": kid, "published": list(realm.keys.keys)}

    @app.post("/__keys", response_model=None)
    async def publish_key(request: Request) -> Response:
        """Publish a caller's public JWK so tokens it signs verify here (development only)."""
        try:
            kid = realm.keys.publish(await request.json())
        except (ValueError, TypeError, KeyError, JoseError):
            return JSONResponse({"detail": "expected a public JWK with a kid"}, status_code=422)
        return JSONResponse({"published": kid}, status_code=201)

    @app.delete("/__keys/{kid}", response_model=None)
    async def retire_key(kid: str) -> Response:
        """Stop publishing a key; tokens it signed no longer verify (development only)."""
        try:
            realm.keys.retire(kid)
        except KeyError:
            return JSONResponse({"detail": "no such key"}, status_code=404)
        except ValueError as error:
            return JSONResponse({"detail": str(error)}, status_code=409)
        return JSONResponse({"current": realm.keys.current_kid, "published": list(realm.keys.keys)})

    @app.post("/__dev/token", response_model=None)
    async def mint_dev_token(body: DevTokenRequest, request: Request) -> Response:
        """Mint an access token for a demo user or client without logging in (development only)."""
        if (body.username is None) == (body.client_id is None):
            return JSONResponse({"detail": "give exactly one of username, client_id"}, 422)
        if body.username is not None:
            user = USERS.get(body.username)
            if user is None:
                return JSONResponse({"detail": "unknown user"}, status_code=404)
            claims = realm.access_claims(
                issuer=issuer_of(request),
                subject=user.username,
                client_id="stockbot-web",
                scope=body.scope or "openid profile",
                roles=user.roles,
                account_ids=user.account_ids,
                ttl_s=body.ttl_s,
            )
        else:
            client = CLIENTS.get(body.client_id or "")
            if client is None:
                return JSONResponse({"detail": "unknown client"}, status_code=404)
            claims = realm.access_claims(
                issuer=issuer_of(request),
                subject=client.client_id,
                client_id=client.client_id,
                scope=body.scope or " ".join(sorted(client.scopes)),
                roles=client.roles,
                account_ids=client.account_ids,
                ttl_s=body.ttl_s,
            )
        return JSONResponse(
            {
                "access_token": realm.keys.sign(claims, typ="at+jwt"),
                "token_type": "Bearer",
                "expires_in": body.ttl_s,
            },
            headers=_NO_STORE,
        )

    return app
