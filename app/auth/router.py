"""Web login, backend-for-frontend style: the gateway is the OAuth client, the browser
only ever holds an opaque, HttpOnly session cookie.

`GET /auth/login` starts an authorization-code flow with PKCE (S256), `state` and `nonce`
kept server-side under a short-lived pre-session cookie; `GET /auth/callback` checks them,
exchanges the code, and opens a server-side session. `GET /auth/session` tells the page who
is logged in and its CSRF token; `POST /auth/logout` ends the session here and revokes its
tokens at the provider.
"""

import hmac
import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Security
from fastapi.responses import RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials

from app.auth.views import PrincipalSummary, SessionInfo
from app.deps import current_principal
from app.errors import BadRequest, ServiceUnavailable, Unauthorized, problem_responses
from app.security.rbac import api_key_header, bearer_token, session_cookie
from app.security.sessions import (
    CSRF_HEADER,
    LoginAttempt,
    SessionAuthenticator,
    new_secret,
    session_expired,
)
from app.security.web_identity import WebIdentity, safe_return_path

router = APIRouter()

_OAUTH_ERROR_CODE = re.compile(r"^[a-z_]{1,64}$")


async def web_identity(request: Request) -> WebIdentity:
    identity: WebIdentity | None = getattr(request.state.gateway, "identity", None)
    if identity is None:
        raise ServiceUnavailable("Web login is not configured on this gateway.")
    return identity


WebIdentityDep = Annotated[WebIdentity, Depends(web_identity)]
# Declared for the OpenAPI document; the authenticators read the request themselves.
SessionCookie = Annotated[str | None, Security(session_cookie)]
CsrfHeader = Annotated[
    str | None,
    Header(
        alias=CSRF_HEADER,
        description="The session's CSRF token from `GET /auth/session`.",
    ),
]


def _set_cookie(
    response: Response, identity: WebIdentity, *, name: str, value: str, max_age: int, path: str
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        httponly=True,
        secure=identity.cookie_secure,
        samesite="lax",
    )


def _clear_cookie(response: Response, identity: WebIdentity, *, name: str, path: str) -> None:
    response.delete_cookie(
        name, path=path, httponly=True, secure=identity.cookie_secure, samesite="lax"
    )


@router.get(
    "/login",
    status_code=303,
    response_class=RedirectResponse,
    responses={
        303: {"description": "Redirect to the identity provider's login page"},
        **problem_responses(400, 503),
    },
)
async def auth_login(
    request: Request,
    identity: WebIdentityDep,
    return_to: Annotated[str, Query(max_length=2048)] = "/",
) -> RedirectResponse:
    """Start the web login: redirect to the identity provider with PKCE."""
    settings = identity.settings.identity
    attempt = LoginAttempt(
        state=new_secret(),
        code_verifier=new_secret() + new_secret(),
        nonce=new_secret(),
        return_to=safe_return_path(return_to),
        redirect_uri=settings.redirect_url or str(request.url_for("auth_callback")),
    )
    location = await identity.provider.authorization_url(attempt)
    login_cookie = await identity.store.begin_login(attempt, ttl_s=settings.login_ttl_s)
    response = RedirectResponse(location, status_code=303, headers={"Cache-Control": "no-store"})
    _set_cookie(
        response,
        identity,
        name=settings.login_cookie_name,
        value=login_cookie,
        max_age=settings.login_ttl_s,
        path="/auth",
    )
    return response


@router.get(
    "/callback",
    status_code=303,
    response_class=RedirectResponse,
    responses={
        303: {"description": "Logged in; back to `return_to`"},
        **problem_responses(400, 401, 503),
    },
)
async def auth_callback(
    request: Request,
    identity: WebIdentityDep,
    state: Annotated[str | None, Query(max_length=512)] = None,
    code: Annotated[str | None, Query(max_length=2048)] = None,
    error: Annotated[str | None, Query(max_length=256)] = None,
    iss: Annotated[str | None, Query(max_length=2048)] = None,
) -> RedirectResponse:
    """Finish the web login: check state, exchange the code, open the session."""
    settings = identity.settings.identity
    login_cookie = request.cookies.get(settings.login_cookie_name)
    if not login_cookie:
        raise BadRequest("No login is in progress in this browser; start at /auth/login.")
    attempt = await identity.store.finish_login(login_cookie)
    if attempt is None:
        raise BadRequest("The login has expired; start again at /auth/login.")
    if state is None or not hmac.compare_digest(state.encode(), attempt.state.encode()):
        raise BadRequest("The login state does not match; start again at /auth/login.")
    if error is not None:
        reason = error if _OAUTH_ERROR_CODE.match(error) else "unknown_error"
        raise Unauthorized(f"The identity provider did not log you in ({reason}).")
    if iss is not None and iss != (await identity.issuer.metadata()).issuer:
        # RFC 9207: the answer must come from the provider the login was sent to.
        raise BadRequest("The login answer came from an unexpected issuer.")
    if not code:
        raise BadRequest("The identity provider's answer carries no authorization code.")
    session = await identity.provider.exchange(attempt, code=code)
    previous_cookie = request.cookies.get(settings.cookie_name)
    if previous_cookie:
        # A new login replaces the browser's old session rather than leaving it alive.
        previous = await identity.sessions.end(previous_cookie)
        if previous is not None:
            await identity.provider.revoke(previous)
    cookie_value = await identity.store.create(session)
    response = RedirectResponse(
        attempt.return_to, status_code=303, headers={"Cache-Control": "no-store"}
    )
    _set_cookie(
        response,
        identity,
        name=settings.cookie_name,
        value=cookie_value,
        max_age=settings.session_ttl_s,
        path="/",
    )
    _clear_cookie(response, identity, name=settings.login_cookie_name, path="/auth")
    return response


@router.get("/session", response_model=SessionInfo, responses=problem_responses(401, 503))
async def auth_session(
    request: Request, identity: WebIdentityDep, response: Response, _cookie: SessionCookie
) -> SessionInfo:
    """Who is logged in, and the CSRF token for state-changing requests."""
    cookie_value = request.cookies.get(identity.settings.identity.cookie_name)
    session = await identity.sessions.current(cookie_value) if cookie_value else None
    if session is None:
        raise session_expired()
    response.headers["Cache-Control"] = "no-store"
    principal = SessionAuthenticator.principal_of(session, settings=identity.settings.identity)
    name = session.claims.get("name")
    return SessionInfo(
        user=PrincipalSummary.of(principal),
        name=name if isinstance(name, str) else None,
        csrf_token=session.csrf_token,
        expires_at=datetime.fromtimestamp(session.expires_at, tz=UTC),
    )


@router.post(
    "/logout", status_code=204, response_class=Response, responses=problem_responses(401, 403)
)
async def auth_logout(
    request: Request, identity: WebIdentityDep, _cookie: SessionCookie, _csrf: CsrfHeader = None
) -> Response:
    """End the session here and at the identity provider; clears the cookie."""
    settings = identity.settings.identity
    cookie_value = request.cookies.get(settings.cookie_name)
    if not cookie_value:
        raise session_expired()
    session = await identity.sessions.current(cookie_value)
    if session is None:
        raise session_expired()
    # Logout is a state change too: without the CSRF check any site could log users out.
    identity.sessions.require_csrf(request, session)
    ended = await identity.sessions.end(cookie_value)
    await identity.provider.revoke(ended or session)
    response = Response(status_code=204)
    _clear_cookie(response, identity, name=settings.cookie_name, path="/")
    return response


@router.get("/whoami", response_model=PrincipalSummary, responses=problem_responses(401, 403, 503))
async def auth_whoami(
    request: Request,
    _cookie: SessionCookie,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_token)],
    _api_key: Annotated[str | None, Security(api_key_header)],
) -> PrincipalSummary:
    """The caller as the gateway identifies it (session cookie, bearer token or API key)."""
    principal = await current_principal(request)
    if principal is None:
        raise Unauthorized(
            "No credential: log in, or send a bearer token or API key.",
            headers={"WWW-Authenticate": 'Bearer realm="stock-bot"'},
        )
    return PrincipalSummary.of(principal)
