"""Users and personal access tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import select

from damselfly.manager.api.deps import DB, Reader, Root, RowId
from damselfly.manager.auth import (
    create_token,
    create_user,
    hash_password,
    now,
    password_matches,
)
from damselfly.manager.models import Token, User

router = APIRouter(prefix="/api/v1", tags=["users"])


class UserIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=8, max_length=256)
    role: Literal["root", "guest"] = "guest"


class UserOut(BaseModel):
    id: int
    name: str
    role: str
    created_at: datetime


class SignIn(BaseModel):
    name: str
    password: str
    token_name: str = Field(default="signin", max_length=128)


class TokenIn(BaseModel):
    name: str = Field(min_length=1, max_length=128)


class TokenOut(BaseModel):
    id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class NewToken(TokenOut):
    token: str = Field(description="Shown once; only its hash is kept")


def _user_out(user: User) -> UserOut:
    return UserOut(id=user.id, name=user.name, role=user.role, created_at=user.created_at)


def _token_out(token: Token) -> TokenOut:
    return TokenOut(
        id=token.id,
        name=token.name,
        created_at=token.created_at,
        last_used_at=token.last_used_at,
        revoked_at=token.revoked_at,
    )


@router.post("/users", status_code=201)
def add_user(body: UserIn, session: DB, _: Root) -> UserOut:
    return _user_out(create_user(session, body.name, body.password, body.role))


@router.get("/users")
def list_users(session: DB, _: Reader) -> list[UserOut]:
    return [_user_out(u) for u in session.scalars(select(User).order_by(User.id))]


@router.get("/users/me")
def me(user: Reader) -> UserOut:
    return _user_out(user)


class PasswordChange(BaseModel):
    old_password: str
    new_password: str = Field(min_length=8, max_length=256)


@router.put("/users/me/password")
def change_password(body: PasswordChange, session: DB, user: Reader) -> UserOut:
    if not password_matches(user, body.old_password):
        raise HTTPException(403, "the old password is wrong")
    user.password_hash = hash_password(body.new_password)
    session.add(user)
    return _user_out(user)


@router.post("/users/signin", status_code=201)
def sign_in(body: SignIn, session: DB) -> NewToken:
    """Username and password for a new token (the console's login)."""
    user = session.scalar(select(User).where(User.name == body.name))
    if user is None or not password_matches(user, body.password):
        raise HTTPException(401, "wrong user name or password")
    token, clear = create_token(session, user, body.token_name)
    return NewToken(**_token_out(token).model_dump(), token=clear)


@router.post("/personal-access-tokens", status_code=201)
def add_token(body: TokenIn, session: DB, user: Reader) -> NewToken:
    token, clear = create_token(session, user, body.name)
    return NewToken(**_token_out(token).model_dump(), token=clear)


@router.get("/personal-access-tokens")
def list_tokens(session: DB, user: Reader) -> list[TokenOut]:
    tokens = session.scalars(select(Token).where(Token.user_id == user.id).order_by(Token.id))
    return [_token_out(t) for t in tokens]


@router.delete("/personal-access-tokens/{token_id}")
def revoke_token(token_id: RowId, session: DB, user: Reader) -> TokenOut:
    """Revoke one of your tokens (root may revoke anyone's)."""
    token = session.get(Token, token_id)
    if token is None or (token.user_id != user.id and user.role != "root"):
        raise HTTPException(404, f"token {token_id} not found")
    if token.revoked_at is None:
        token.revoked_at = now()
    return _token_out(token)
