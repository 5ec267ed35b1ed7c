"""Console sign-in: a personal access token in an HttpOnly, SameSite=Strict cookie.

The token is an ordinary one (named "console"), so signing out revokes it and the
API's rules apply unchanged: a guest can read everything and change nothing.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from damselfly.database import utcnow
from damselfly.manager.api.deps import DB
from damselfly.manager.auth import create_token, password_matches, token_hash, user_for_token
from damselfly.manager.models import Token, User

COOKIE = "damselfly_session"


class SignInRequired(Exception):
    """Raised by page dependencies; the app turns it into a redirect to the login page."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


_SAFE = {"GET", "HEAD", "OPTIONS"}


def same_origin(request: Request) -> None:
    """Refuse cross-site changes (CSRF). SameSite=Strict already keeps the cookie off
    them; this also covers sites on the same host name and browsers without SameSite."""
    if request.method in _SAFE:
        return
    source = request.headers.get("origin") or request.headers.get("referer") or ""
    if urlsplit(source).netloc != request.headers.get("host", "") or not source:
        raise HTTPException(
            403,
            "cross-site request refused: the console takes changes only from its own pages "
            f"(Origin {source or 'missing'}); use the REST API with a token from scripts",
        )


def sign_in(session: Session, name: str, password: str) -> str | None:
    """A new console token for good credentials, else None."""
    user = session.scalar(select(User).where(User.name == name))
    if user is None or not password_matches(user, password):
        return None
    _, clear = create_token(session, user, "console")
    return clear


def sign_out(session: Session, clear: str) -> None:
    token = session.scalar(select(Token).where(Token.token_hash == token_hash(clear)))
    if token is not None and token.revoked_at is None:
        token.revoked_at = utcnow()


def cookie_user(request: Request, session: Session) -> User | None:
    clear = request.cookies.get(COOKIE)
    if not clear:
        return None
    user = user_for_token(session, clear)
    session.commit()  # last_used_at; an open write would block the job engine on SQLite
    return user


def viewer(request: Request, session: DB) -> User:
    user = cookie_user(request, session)
    if user is None:
        raise SignInRequired(request.url.path)
    return user


def editor(user: Annotated[User, Depends(viewer)]) -> User:
    if user.role != "root":
        raise HTTPException(403, f"{user.name} may only look (role {user.role})")
    return user


Viewer = Annotated[User, Depends(viewer)]
Editor = Annotated[User, Depends(editor)]
