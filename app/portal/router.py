"""The developer portal at `/portal`: server-rendered pages (Jinja2) for partner developers.

A developer signs in through the identity provider (the web login, `/auth/login`, whose
session cookie the portal reads), asks for access, and once an admin approved the sign-up
in the portal's admin view (`/portal/admin`, the admin role) has a consumer of their own:
its plan, API keys (created, named, rotated with an overlap, revoked; each action audited),
its usage as charts, and the partner API's docs with a "try it" form. Every page works
without JavaScript; `static/portal.js` only adds a copy button and fills the try-it key.

Each form post carries the session's CSRF token (the synchronizer token the web login
issues, `WebSession.csrf_token`) as a hidden field, and is refused without it. Bad input is
a friendly page naming the field (422), never a 500.
"""

import base64
import contextlib
import hmac
import logging
import re
import weakref
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from functools import cache, partial
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData

from app.admin.changes import stage_change
from app.deps import SessionDep
from app.errors import GatewayError
from app.frontends.mcp.gateway_call import call_in_process
from app.frontends.versions import API_VERSIONS
from app.openapi import ApiDocument, build_document
from app.portal.charts import Bar, latency_lines, stacked_bars
from app.portal.views import (
    NOTICES,
    AccessRequest,
    KeyName,
    KeyRow,
    PortalRefusal,
    RotateKey,
    SignupDecision,
    Visitor,
    parse_form,
)
from app.security.apikeys import announce_revocation, issue_key, key_hasher
from app.security.sessions import SessionAuthenticator
from app.shared.redis import RedisUnavailable
from app.state import GatewayState
from app.store.consumers import ApiKeyRepository, ConsumerRepository, PlanRepository
from app.store.database import after_commit, stored_utc
from app.store.developers import AuditRepository, SignupRepository
from app.store.models import ApiKey, Consumer, DeveloperSignup

logger = logging.getLogger("gateway.portal")

PARTNER_DOCUMENT = ApiDocument(
    slug="partner-v1",
    title="stock-bot partner API",
    prefix="/partner/v1",
    description="Market data and order entry for partner systems.",
)
_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
_STATIC = {
    "portal.css": "text/css; charset=utf-8",
    "portal.js": "text/javascript; charset=utf-8",
}
_TRY_METHODS = frozenset({"get", "post"})
_MAX_TRY_BODY = 64 * 1024

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
templates.env.filters["hour"] = lambda start: datetime.fromtimestamp(start, UTC).strftime("%H:00")
templates.env.filters["ms"] = lambda value: "—" if value is None else f"≤ {value:g} ms"


class PortalRoute(APIRoute):
    """A portal page: a refusal or a form the route cannot read becomes a friendly page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_page(request: Request) -> Response:
            try:
                return await handle(request)
            except PortalRefusal as refusal:
                return await _refusal_page(request, refusal)
            except GatewayError as error:
                # The store or the session store unavailable, a body over the limit...: the
                # same status and detail as the problem, on a page, with its headers.
                answer = await _refusal_page(request, PortalRefusal(error.status, error.detail))
                answer.headers.update(error.headers)
                return answer
            except RequestValidationError as exc:
                fields = ", ".join(str(error.get("loc", ["?"])[-1]) for error in exc.errors()[:5])
                return await _refusal_page(
                    request,
                    PortalRefusal(422, f"This address is not one the portal knows ({fields})."),
                )

        return handle_page


router = APIRouter(route_class=PortalRoute)


def _state(request: Request) -> GatewayState:
    state: GatewayState = request.state.gateway
    return state


async def visitor_of(request: Request) -> Visitor | None:
    """The signed-in web session's user, or None (no cookie, or a session that ended)."""
    identity = _state(request).identity
    settings = identity.settings.identity
    cookie = request.cookies.get(settings.cookie_name)
    if not cookie:
        return None
    session = await identity.sessions.current(cookie)
    if session is None:
        return None
    principal = SessionAuthenticator.principal_of(session, settings=settings)
    profile = {**_profile(session.id_token), **session.claims}
    name = profile.get("name")
    email = profile.get("email")
    return Visitor(
        principal=principal,
        csrf_token=session.csrf_token,
        name=name if isinstance(name, str) else principal.subject,
        email=email if isinstance(email, str) else "",
    )


def _profile(id_token: str | None) -> dict[str, Any]:
    """The ID token's claims, for the name and email the pages show: the login checked its
    signature, issuer, audience and nonce (`app.security.oidc`); nothing is decided on them."""
    if not id_token:
        return {}
    try:
        payload = id_token.split(".")[1]
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def _login_redirect(path: str) -> RedirectResponse:
    return RedirectResponse(
        "/auth/login?" + urlencode({"return_to": path}),
        status_code=303,
        headers={"Cache-Control": "no-store"},
    )


def page(
    request: Request,
    template: str,
    *,
    visitor: Visitor | None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    notice = NOTICES.get(request.query_params.get("notice", ""))
    response = templates.TemplateResponse(
        request,
        template,
        {
            "visitor": visitor,
            "notice": notice,
            "path": request.url.path,
            "now": datetime.now(UTC),
            **context,
        },
        status_code=status,
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = _CSP
    return response


async def _refusal_page(request: Request, refusal: PortalRefusal) -> Response:
    try:
        visitor = await visitor_of(request)
    except GatewayError:
        visitor = None
    return page(
        request,
        "error.html",
        visitor=visitor,
        status=refusal.status,
        refusal=refusal,
    )


async def _checked_form(request: Request, visitor: Visitor | None) -> FormData:
    """The posted form, once its CSRF token matches the session's."""
    if visitor is None:
        raise PortalRefusal(401, "Your session has ended. Sign in again, then repeat the action.")
    try:
        form = await request.form(max_files=0, max_fields=50)
    except Exception as exc:
        raise PortalRefusal(400, "The form could not be read.") from exc
    presented = form.get("csrf_token")
    if not isinstance(presented, str) or not hmac.compare_digest(
        presented.encode(), visitor.csrf_token.encode()
    ):
        raise PortalRefusal(
            403,
            "This form was not sent from your portal session (its security token does not "
            "match). Reload the page and try again.",
        )
    return form


def _back(path: str, notice: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?notice={notice}", status_code=303)


async def _signup_of(session: AsyncSession, visitor: Visitor) -> DeveloperSignup | None:
    return await SignupRepository(session).by_subject(visitor.principal.subject)


async def _developer(
    request: Request, session: AsyncSession
) -> tuple[Visitor, DeveloperSignup, Consumer] | Response:
    """The signed-in developer with an approved sign-up and its consumer, or the page that
    says what is missing (sign in, request access, wait for approval)."""
    visitor = await visitor_of(request)
    if visitor is None:
        return _login_redirect(request.url.path)
    signup = await _signup_of(session, visitor)
    if signup is None or signup.status != "approved" or signup.consumer_id is None:
        return RedirectResponse("/portal/", status_code=303)
    consumer = await ConsumerRepository(session).by_id(signup.consumer_id)
    if consumer is None:
        raise PortalRefusal(410, "Your developer account's consumer no longer exists.")
    return visitor, signup, consumer


def _plans_view(request: Request) -> list[Any]:
    snapshot = _state(request).config.current
    return sorted(snapshot.plans.values(), key=lambda plan: plan.name)


@router.get("/", response_class=HTMLResponse)
async def portal_home(request: Request, session: SessionDep) -> Response:
    """The portal's start: the landing page, the access request, or the developer's overview."""
    visitor = await visitor_of(request)
    settings = _state(request).settings.portal
    if visitor is None:
        return page(request, "landing.html", visitor=None, plans=_plans_view(request))
    signup = await _signup_of(session, visitor)
    if signup is None:
        return page(
            request,
            "request_access.html",
            visitor=visitor,
            form={"name": visitor.name, "email": visitor.email, "company": "", "intended_use": ""},
            errors={},
            approval=settings.require_approval,
        )
    if signup.status != "approved" or signup.consumer_id is None:
        return page(request, "signup_status.html", visitor=visitor, signup=signup)
    consumer = await ConsumerRepository(session).by_id(signup.consumer_id)
    if consumer is None:
        raise PortalRefusal(410, "Your developer account's consumer no longer exists.")
    keys = await ApiKeyRepository(session).of_consumer(consumer.consumer_id)
    state = _state(request)
    try:
        quota = await state.chain.quotas.usage(consumer.consumer_id)
    except GatewayError:
        quota = None
    plan = state.config.current.plans.get(consumer.plan.name) if consumer.plan else None
    return page(
        request,
        "overview.html",
        visitor=visitor,
        consumer=consumer,
        plan=plan,
        quota=quota,
        active_keys=sum(1 for key in keys if KeyRow.of(key).status == "active"),
        notices=_version_notices(request, called=None),
    )


@router.get("/access", response_class=HTMLResponse)
async def portal_access_form(request: Request) -> Response:
    """Request access: sign in first, then the form."""
    if await visitor_of(request) is None:
        return _login_redirect("/portal/")
    return RedirectResponse("/portal/", status_code=303)


@router.post("/access", response_class=HTMLResponse)
async def portal_request_access(request: Request, session: SessionDep) -> Response:
    """Ask for access to the partner API (approved by an admin unless approval is off)."""
    visitor = await visitor_of(request)
    form = await _checked_form(request, visitor)
    assert visitor is not None
    settings = _state(request).settings.portal
    answer, errors = parse_form(AccessRequest, form)
    if answer is None:
        return page(
            request,
            "request_access.html",
            visitor=visitor,
            status=422,
            form={k: form.get(k, "") for k in ("name", "email", "company", "intended_use")},
            errors=errors,
            approval=settings.require_approval,
        )
    repo = SignupRepository(session)
    if await repo.by_subject(visitor.principal.subject) is not None:
        return _back("/portal/", "already-requested")
    signup = await repo.add(
        DeveloperSignup(
            subject=visitor.principal.subject,
            name=answer.name,
            email=answer.email,
            company=answer.company,
            intended_use=answer.intended_use,
            status="pending",
        )
    )
    audit = AuditRepository(session)
    await audit.record(
        actor=visitor.principal.subject,
        action="signup.requested",
        consumer_id=None,
        target=f"signup:{signup.signup_id}",
    )
    if not settings.require_approval:
        plan = await _default_plan(session, settings.signup_plan)
        if plan is None:
            raise PortalRefusal(
                503, "No plan is set up for new developers yet; an administrator has been asked."
            )
        await _approve(request, session, signup, plan_name=plan, actor="auto-approval")
        return _back("/portal/", "approved")
    return _back("/portal/", "requested")


async def _default_plan(session: AsyncSession, configured: str | None) -> str | None:
    plans = await PlanRepository(session).all()
    names = [plan.name for plan in plans]
    if configured in names:
        return configured
    return names[0] if names else None


async def _approve(
    request: Request,
    session: AsyncSession,
    signup: DeveloperSignup,
    *,
    plan_name: str,
    actor: str,
) -> Consumer:
    plan = await PlanRepository(session).by_name(plan_name)
    if plan is None:
        raise PortalRefusal(422, f"There is no plan named {plan_name!r}.")
    consumers = ConsumerRepository(session)
    base = "dev-" + (re.sub(r"[^a-z0-9_.-]+", "-", signup.subject.lower()).strip("-.") or "x")
    name, suffix = base[:90], 1
    while await consumers.by_name(name) is not None:
        suffix += 1
        name = f"{base[:90]}-{suffix}"
    consumer = await consumers.add(Consumer(name=name, plan_id=plan.plan_id, account_ids=[]))
    signup.status = "approved"
    signup.consumer_id = consumer.consumer_id
    signup.decided_by = actor
    signup.decided_at = datetime.now(UTC)
    await AuditRepository(session).record(
        actor=actor,
        action="signup.approved",
        consumer_id=consumer.consumer_id,
        target=f"signup:{signup.signup_id}",
        detail={"plan": plan_name, "consumer": name, "developer": signup.subject},
    )
    await stage_change(session, _state(request).notices)
    return consumer


@router.get("/plans", response_class=HTMLResponse)
async def portal_plans(request: Request, session: SessionDep) -> Response:
    """Every plan with its limits, quotas and scopes; the developer's own marked."""
    visitor = await visitor_of(request)
    current = None
    if visitor is not None:
        signup = await _signup_of(session, visitor)
        if signup is not None and signup.consumer_id is not None:
            consumer = await ConsumerRepository(session).by_id(signup.consumer_id)
            current = consumer.plan.name if consumer and consumer.plan else None
    return page(request, "plans.html", visitor=visitor, plans=_plans_view(request), current=current)


@router.get("/keys", response_class=HTMLResponse)
async def portal_keys(request: Request, session: SessionDep) -> Response:
    """The developer's API keys, and the forms to create, name, rotate and revoke them."""
    found = await _developer(request, session)
    if isinstance(found, Response):
        return found
    visitor, _, consumer = found
    return await _keys_page(request, session, visitor, consumer)


async def _keys_page(
    request: Request,
    session: AsyncSession,
    visitor: Visitor,
    consumer: Consumer,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
) -> HTMLResponse:
    keys = await ApiKeyRepository(session).of_consumer(consumer.consumer_id)
    events = await AuditRepository(session).latest(consumer_id=consumer.consumer_id, limit=20)
    return page(
        request,
        "keys.html",
        visitor=visitor,
        status=status,
        consumer=consumer,
        keys=[KeyRow.of(key) for key in reversed(keys)],
        events=events,
        errors=errors or {},
        overlaps=_overlap_choices(request),
    )


def _overlap_choices(request: Request) -> list[tuple[int, str]]:
    longest = _state(request).settings.portal.max_rotation_overlap_h
    choices = [(0, "No overlap: the old key stops now"), (1, "1 hour"), (24, "24 hours")]
    choices += [(168, "7 days")]
    return [(hours, label) for hours, label in choices if hours <= longest]


@router.post("/keys", response_class=HTMLResponse)
async def portal_create_key(request: Request, session: SessionDep) -> Response:
    """Create a key; shown once, on the answer to this post."""
    visitor = await visitor_of(request)
    form = await _checked_form(request, visitor)
    found = await _developer(request, session)
    if isinstance(found, Response):
        return found
    visitor, _, consumer = found
    answer, errors = parse_form(KeyName, form)
    if answer is None:
        return await _keys_page(request, session, visitor, consumer, status=422, errors=errors)
    key, secret = await _issue(request, session, consumer, name=answer.name)
    await AuditRepository(session).record(
        actor=visitor.principal.subject,
        action="key.created",
        consumer_id=consumer.consumer_id,
        target=f"key:{key.prefix}",
        detail={"name": key.name},
    )
    await stage_change(session, _state(request).notices)
    return page(request, "key_created.html", visitor=visitor, key=KeyRow.of(key), secret=secret)


async def _issue(
    request: Request, session: AsyncSession, consumer: Consumer, *, name: str
) -> tuple[ApiKey, str]:
    issued = issue_key(key_hasher(_state(request).settings))
    key = ApiKey(
        consumer_id=consumer.consumer_id,
        prefix=issued.prefix,
        key_hash=issued.key_hash,
        name=name,
    )
    await ApiKeyRepository(session).add(key)
    return key, issued.key


async def _own_key(session: AsyncSession, consumer: Consumer, key_id: int) -> ApiKey:
    key = await ApiKeyRepository(session).by_id(consumer.consumer_id, key_id)
    if key is None:
        raise PortalRefusal(404, "You have no key with that id.")
    return key


@router.post("/keys/{key_id}/name", response_class=HTMLResponse)
async def portal_rename_key(request: Request, key_id: int, session: SessionDep) -> Response:
    """Rename a key."""
    visitor = await visitor_of(request)
    form = await _checked_form(request, visitor)
    found = await _developer(request, session)
    if isinstance(found, Response):
        return found
    visitor, _, consumer = found
    key = await _own_key(session, consumer, key_id)
    answer, errors = parse_form(KeyName, form)
    if answer is None:
        errors = {f"name-{key_id}": message for message in errors.values()}
        return await _keys_page(request, session, visitor, consumer, status=422, errors=errors)
    before, key.name = key.name, answer.name
    await AuditRepository(session).record(
        actor=visitor.principal.subject,
        action="key.renamed",
        consumer_id=consumer.consumer_id,
        target=f"key:{key.prefix}",
        detail={"from": before, "to": answer.name},
    )
    await stage_change(session, _state(request).notices)
    return _back("/portal/keys", "key-renamed")


@router.post("/keys/{key_id}/rotate", response_class=HTMLResponse)
async def portal_rotate_key(request: Request, key_id: int, session: SessionDep) -> Response:
    """Replace a key by a new one; the old one keeps working for the overlap chosen."""
    visitor = await visitor_of(request)
    form = await _checked_form(request, visitor)
    found = await _developer(request, session)
    if isinstance(found, Response):
        return found
    visitor, _, consumer = found
    key = await _own_key(session, consumer, key_id)
    answer, errors = parse_form(RotateKey, form)
    longest = _state(request).settings.portal.max_rotation_overlap_h
    if answer is None or answer.overlap_hours > longest:
        message = errors.get("overlap_hours") or f"choose at most {longest} hours"
        errors = {f"overlap-{key_id}": message}
        return await _keys_page(request, session, visitor, consumer, status=422, errors=errors)
    row = KeyRow.of(key)
    if row.status != "active":
        raise PortalRefusal(409, f"Key {key.prefix} is {row.status}; only an active key rotates.")
    new_key, secret = await _issue(request, session, consumer, name=key.name)
    now = datetime.now(UTC)
    ends = now + timedelta(hours=answer.overlap_hours)
    repo = ApiKeyRepository(session)
    if answer.overlap_hours == 0:
        await repo.revoke(key, at=now)
        after_commit(session, partial(_announce, request, key.prefix))
    else:
        current_end = stored_utc(key.expires_at)
        key.expires_at = ends if current_end is None else min(current_end, ends)
    await AuditRepository(session).record(
        actor=visitor.principal.subject,
        action="key.rotated",
        consumer_id=consumer.consumer_id,
        target=f"key:{key.prefix}",
        detail={
            "successor": new_key.prefix,
            "overlap_hours": answer.overlap_hours,
            "old_key_ends": (now if answer.overlap_hours == 0 else ends).isoformat(),
        },
    )
    await stage_change(session, _state(request).notices)
    return page(
        request,
        "key_created.html",
        visitor=visitor,
        key=KeyRow.of(new_key),
        secret=secret,
        rotated_from=KeyRow.of(key),
    )


@router.post("/keys/{key_id}/revoke", response_class=HTMLResponse)
async def portal_revoke_key(request: Request, key_id: int, session: SessionDep) -> Response:
    """Revoke a key: every gateway process refuses it from the next request on."""
    visitor = await visitor_of(request)
    await _checked_form(request, visitor)
    found = await _developer(request, session)
    if isinstance(found, Response):
        return found
    visitor, _, consumer = found
    key = await _own_key(session, consumer, key_id)
    if key.revoked_at is None:
        await ApiKeyRepository(session).revoke(key, at=datetime.now(UTC))
        await AuditRepository(session).record(
            actor=visitor.principal.subject,
            action="key.revoked",
            consumer_id=consumer.consumer_id,
            target=f"key:{key.prefix}",
            detail={"name": key.name},
        )
        await stage_change(session, _state(request).notices)
        after_commit(session, partial(_announce, request, key.prefix))
    return _back("/portal/keys", "key-revoked")


async def _announce(request: Request, prefix: str) -> None:
    state = _state(request)
    try:
        await announce_revocation(state.redis, state.settings, prefix)
    except RedisUnavailable as exc:
        # Committed and live in this process; peers follow on the change notice.
        logger.warning("could not mark key %s revoked in Redis: %s", prefix, exc)


@router.get("/usage", response_class=HTMLResponse)
async def portal_usage(request: Request, session: SessionDep) -> Response:
    """The developer's requests per hour and day, by route and status class, and latency."""
    found = await _developer(request, session)
    if isinstance(found, Response):
        return found
    visitor, _, consumer = found
    try:
        report = await _state(request).usage.report(consumer.consumer_id)
    except RedisUnavailable as exc:
        raise PortalRefusal(503, "Usage cannot be read right now; try again shortly.") from exc
    hours = [
        Bar(datetime.fromtimestamp(p.start, UTC).strftime("%H:00"), p.by_class)
        for p in report.hours
    ]
    days = [
        Bar(datetime.fromtimestamp(p.start, UTC).strftime("%d %b"), p.by_class) for p in report.days
    ]
    return page(
        request,
        "usage.html",
        visitor=visitor,
        consumer=consumer,
        report=report,
        hourly=stacked_bars(
            hours, title="Requests per hour, last 24 hours (UTC)", chart_id="hourly", label_every=3
        ),
        daily=stacked_bars(
            days,
            title=f"Requests per day, last {len(days)} days (UTC)",
            chart_id="daily",
            label_every=2,
        ),
        latency=latency_lines(
            [(b.label, p.latency_ms) for b, p in zip(hours, report.hours, strict=True)],
            title="Latency percentiles per hour",
            chart_id="latency",
        ),
        notices=_version_notices(request, called=[r.route for r in report.routes]),
    )


def _version_notices(request: Request, *, called: list[str] | None) -> list[dict[str, Any]]:
    """The versions the developer calls (the partner API's by default) with their status,
    and the deprecation and sunset dates of superseded ones."""
    superseded = _state(request).settings.versions.superseded
    paths = [route.partition(" ")[2] or route for route in called or []]
    notices = []
    for version in API_VERSIONS:
        used = any(p.startswith(version.prefix + "/") for p in paths)
        if version.frontend != "partner" and not used:
            continue
        dates = superseded.get(version.key)
        notices.append(
            {
                "version": version.key,
                "prefix": version.prefix,
                "successor": version.successor_prefix,
                "deprecated_at": dates.deprecated_at if dates else None,
                "sunset": dates.sunset if dates else None,
                "called": used,
            }
        )
    return notices


_documents: "weakref.WeakKeyDictionary[FastAPI, dict[str, Any]]" = weakref.WeakKeyDictionary()


def _partner_document(request: Request) -> dict[str, Any]:
    app: FastAPI = request.app
    document = _documents.get(app)
    if document is None:
        document = _documents[app] = build_document(app, PARTNER_DOCUMENT)
    return document


def _operations(document: dict[str, Any]) -> list[dict[str, Any]]:
    operations = []
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method not in _TRY_METHODS:
                continue
            parameters = []
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                example = parameter.get("example", schema.get("example", schema.get("default", "")))
                if example == "" and schema.get("examples"):
                    example = schema["examples"][0]
                parameters.append(
                    {
                        "name": parameter["name"],
                        "in": parameter["in"],
                        "required": parameter.get("required", False),
                        "description": parameter.get("description", ""),
                        "example": "" if example is None else str(example),
                    }
                )
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            body_example = ""
            if body is not None:
                schema = body.get("schema", {})
                ref = schema.get("$ref", "")
                if ref:
                    schema = document["components"]["schemas"].get(ref.rsplit("/", 1)[-1], {})
                examples = schema.get("examples") or [schema.get("example")]
                if examples and examples[0] is not None:
                    body_example = orjson.dumps(examples[0], option=orjson.OPT_INDENT_2).decode()
            operations.append(
                {
                    "id": operation.get("operationId", f"{method} {path}"),
                    "method": method.upper(),
                    "path": path,
                    "summary": operation.get("summary", ""),
                    "description": operation.get("description", ""),
                    "deprecated": operation.get("deprecated", False),
                    "parameters": parameters,
                    "has_body": body is not None,
                    "body_example": body_example,
                }
            )
    return operations


@router.get("/docs", response_class=HTMLResponse)
async def portal_docs(request: Request) -> Response:
    """The partner API's operations, each with a "try it" form."""
    visitor = await visitor_of(request)
    operations = _operations(_partner_document(request))
    return page(
        request,
        "docs.html",
        visitor=visitor,
        operations=operations,
        notices=_version_notices(request, called=None),
        result=None,
    )


@router.post("/docs/try", response_class=HTMLResponse)
async def portal_try(request: Request) -> Response:
    """Call one partner operation with the key given, in process, and show the answer."""
    visitor = await visitor_of(request)
    form = await _checked_form(request, visitor)
    operations = {op["id"]: op for op in _operations(_partner_document(request))}
    operation = operations.get(str(form.get("operation", "")))
    if operation is None:
        raise PortalRefusal(422, "Choose one of the partner API's operations.")
    api_key = str(form.get("api_key", "")).strip()
    if not api_key:
        raise PortalRefusal(422, "Give an API key (create one on the Keys page).")
    path = operation["path"]
    query: list[tuple[str, str]] = []
    headers = [(b"x-api-key", api_key.encode()), (b"accept", b"application/json")]
    for parameter in operation["parameters"]:
        value = str(form.get(f"p.{parameter['name']}", "")).strip()
        if not value:
            if parameter["required"]:
                raise PortalRefusal(422, f"{parameter['name']} is required.")
            continue
        if parameter["in"] == "path":
            path = path.replace("{" + parameter["name"] + "}", quote(value, safe=""))
        elif parameter["in"] == "query":
            query.append((parameter["name"], value))
        elif parameter["in"] == "header" and parameter["name"].lower() != "x-api-key":
            headers.append((parameter["name"].lower().encode(), value.encode()))
    body = b""
    if operation["has_body"]:
        body = str(form.get("body", "")).encode()
        if len(body) > _MAX_TRY_BODY:
            raise PortalRefusal(413, "The request body is too large for the try-it form.")
        headers.append((b"content-type", b"application/json"))
    answer = await call_in_process(
        request.app,
        parent=request.scope,
        method=operation["method"],
        raw_path=path,
        query=urlencode(query, safe=",").encode(),
        headers=headers,
        body=body,
    )
    text = answer.body.decode("utf-8", "replace")
    with contextlib.suppress(orjson.JSONDecodeError):
        text = orjson.dumps(orjson.loads(answer.body), option=orjson.OPT_INDENT_2).decode()
    shown = ("content-type", "ratelimit", "ratelimit-policy", "retry-after", "x-request-id")
    return page(
        request,
        "docs.html",
        visitor=visitor,
        operations=list(operations.values()),
        notices=_version_notices(request, called=None),
        result={
            "operation": operation["id"],
            "request": f"{operation['method']} {path}"
            + (f"?{urlencode(query, safe=',')}" if query else ""),
            "status": answer.status,
            "headers": [(h, answer.headers[h]) for h in shown if h in answer.headers],
            "body": text[:20000],
        },
    )


@router.get("/admin", response_class=HTMLResponse)
async def portal_admin(request: Request, session: SessionDep) -> Response:
    """The admin view: sign-ups to approve or reject, and the audit trail."""
    visitor = await visitor_of(request)
    if visitor is None:
        return _login_redirect("/portal/admin")
    if not visitor.is_admin:
        raise PortalRefusal(403, "The portal's admin view needs the admin role.")
    signups = await SignupRepository(session).all()
    plans = [plan.name for plan in await PlanRepository(session).all()]
    settings = _state(request).settings.portal
    default = (
        settings.signup_plan if settings.signup_plan in plans else (plans[0] if plans else None)
    )
    return page(
        request,
        "admin.html",
        visitor=visitor,
        signups=signups,
        plans=plans,
        default_plan=default,
        events=await AuditRepository(session).latest(limit=50),
        approval=settings.require_approval,
    )


@router.post("/admin/signups/{signup_id}", response_class=HTMLResponse)
async def portal_decide_signup(request: Request, signup_id: int, session: SessionDep) -> Response:
    """Approve a sign-up (a consumer on the plan chosen) or reject it."""
    visitor = await visitor_of(request)
    form = await _checked_form(request, visitor)
    assert visitor is not None
    if not visitor.is_admin:
        raise PortalRefusal(403, "Deciding sign-ups needs the admin role.")
    answer, errors = parse_form(SignupDecision, form)
    if answer is None:
        raise PortalRefusal(422, "; ".join(f"{k}: {v}" for k, v in errors.items()))
    signup = await SignupRepository(session).by_id(signup_id)
    if signup is None:
        raise PortalRefusal(404, "There is no such sign-up.")
    if signup.status != "pending":
        raise PortalRefusal(409, f"This sign-up was already {signup.status}.")
    if answer.decision == "approve":
        if not answer.plan:
            raise PortalRefusal(422, "Choose the plan to approve the developer on.")
        await _approve(
            request, session, signup, plan_name=answer.plan, actor=visitor.principal.subject
        )
        return _back("/portal/admin", "signup-approved")
    signup.status = "rejected"
    signup.decided_by = visitor.principal.subject
    signup.decided_at = datetime.now(UTC)
    await AuditRepository(session).record(
        actor=visitor.principal.subject,
        action="signup.rejected",
        consumer_id=None,
        target=f"signup:{signup.signup_id}",
        detail={"developer": signup.subject, "reason": answer.reason},
    )
    return _back("/portal/admin", "signup-rejected")


@router.post("/signout", response_class=HTMLResponse)
async def portal_sign_out(request: Request) -> Response:
    """End the web session here and at the identity provider."""
    visitor = await visitor_of(request)
    await _checked_form(request, visitor)
    identity = _state(request).identity
    settings = identity.settings.identity
    cookie = request.cookies.get(settings.cookie_name, "")
    ended = await identity.sessions.end(cookie)
    if ended is not None:
        await identity.provider.revoke(ended)
    response = RedirectResponse("/portal/?notice=signed-out", status_code=303)
    response.delete_cookie(
        settings.cookie_name, path="/", httponly=True, secure=identity.cookie_secure, samesite="lax"
    )
    return response


@cache
def _static(name: str) -> bytes:
    return resources.files("app.portal").joinpath("static", name).read_bytes()


@router.get("/static/{name}")
async def portal_static(name: str) -> Response:
    """The portal's own stylesheet and script (no CDN)."""
    media_type = _STATIC.get(name)
    if media_type is None:
        raise PortalRefusal(404, "No such file.")
    return Response(
        _static(name),
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=300"},
    )
