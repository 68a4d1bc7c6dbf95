"""Sign up, sign in, sign out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from adbtd.dashboard.deps import PREFIX, RuntimeDep, redirect, render
from adbtd.dashboard.security import SESSION_COOKIE, clear_cookie, set_cookie
from adbtd.errors import AdbtdError, LoginLimited
from adbtd.runtime import Runtime
from adbtd.services import users
from adbtd.services.users import SignedIn

router = APIRouter()


def _safe_next(value: str | None) -> str:
    """Only same-site dashboard paths; anything else goes to the overview."""
    safe = (
        value is not None
        and value.startswith(PREFIX + "/")
        and "\\" not in value
        and "://" not in value
    )
    return value if safe and value else PREFIX + "/"


def _signed_in(runtime: Runtime, signed: SignedIn, next_url: str) -> RedirectResponse:
    response = RedirectResponse(next_url, status_code=303)
    max_age = int(runtime.settings.session_hours * 3600)
    set_cookie(response, runtime.settings, SESSION_COOKIE, signed.token, max_age)
    return response


@router.get("/signup", response_class=HTMLResponse)
def signup_page(request: Request) -> Response:
    return render(request, "signup.html", form={})


@router.post("/signup", response_class=HTMLResponse)
def signup(
    request: Request,
    runtime: RuntimeDep,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    workspace_name: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    form = {"email": email, "workspace_name": workspace_name}
    try:
        users.normalize_email(email)  # a bad address is refused before the slow hash
        password_hash = users.hash_password(password)  # slow: before the transaction
        with runtime.db.transaction() as session:
            user = users.sign_up(
                session,
                email=email,
                password_hash=password_hash,
                workspace_name=workspace_name or email.partition("@")[0] or "My workspace",
                billing_provider=runtime.settings.billing_provider,
            )
            signed = users.start_session(
                session,
                user=user,
                settings=runtime.settings,
                replaces=request.cookies.get(SESSION_COOKIE),
            )
    except AdbtdError as exc:
        return render(request, "signup.html", status=400, form=form, error=exc.message)
    return _signed_in(runtime, signed, PREFIX + "/?notice=welcome")


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, runtime: RuntimeDep, next: str | None = None) -> Response:
    """The sign-in form; a browser that is already signed in goes straight on."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        with runtime.db.transaction() as session:
            signed_in = users.resolve_session(session, token=token) is not None
        if signed_in:
            return RedirectResponse(_safe_next(next), status_code=303)
    return render(request, "login.html", form={}, next=_safe_next(next))


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    runtime: RuntimeDep,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    form = {"email": email}
    client_ip = request.client.host if request.client else "unknown"
    try:
        with runtime.db.read() as session:
            attempt = users.begin_sign_in(
                session, email=email, client_ip=client_ip, settings=runtime.settings
            )
    except LoginLimited as exc:
        return render(
            request, "login.html", status=429, form=form, next=_safe_next(next), error=exc.message
        )
    matched = users.password_matches(attempt, password)  # the slow part, no transaction open
    with runtime.db.transaction() as session:
        user = users.finish_sign_in(
            session, attempt=attempt, matched=matched, password=password, settings=runtime.settings
        )
        signed = None
        if user is not None:
            signed = users.start_session(
                session,
                user=user,
                settings=runtime.settings,
                replaces=request.cookies.get(SESSION_COOKIE),
            )
    if signed is None:
        return render(
            request,
            "login.html",
            status=401,
            form=form,
            next=_safe_next(next),
            error="Wrong email or password.",
        )
    return _signed_in(runtime, signed, _safe_next(next))


@router.post("/logout")
def logout(request: Request, runtime: RuntimeDep) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        with runtime.db.transaction() as session:
            users.end_session(session, token=token)
    response = redirect("/login", notice="signed-out")
    clear_cookie(response, runtime.settings, SESSION_COOKIE)
    return response
