"""Users, password hashes (argon2) and personal access tokens.

A token is shown once, when made; the database keeps only its SHA-256, so a stolen
database does not hand out access.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from damselfly.database import utcnow as now
from damselfly.errors import Conflict, InvalidInput
from damselfly.manager.models import Token, User

ROLES = ("root", "guest")
TOKEN_PREFIX = "dfly_"
_hasher = PasswordHasher()  # stateless parameters; safe to share


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise InvalidInput("a password needs at least 8 characters")
    return _hasher.hash(password)


def password_matches(user: User, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(session: Session, name: str, password: str, role: str) -> User:
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
    if not name or len(name) > 64:
        raise InvalidInput("a user name needs 1-64 characters")
    if session.scalar(select(User).where(User.name == name)) is not None:
        raise Conflict(f"user {name!r} already exists")
    user = User(name=name, password_hash=hash_password(password), role=role, created_at=now())
    session.add(user)
    session.flush()
    return user


def create_token(session: Session, user: User, name: str) -> tuple[Token, str]:
    """A new token for `user`; the clear text is returned once and never stored."""
    clear = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = Token(user_id=user.id, name=name, token_hash=token_hash(clear), created_at=now())
    session.add(token)
    session.flush()
    return token, clear


def user_for_token(session: Session, clear: str) -> User | None:
    token = session.scalar(select(Token).where(Token.token_hash == token_hash(clear)))
    if token is None or token.revoked_at is not None:
        return None
    token.last_used_at = now()
    return session.get(User, token.user_id)


@dataclass(frozen=True, slots=True)
class Bootstrap:
    created: bool
    password: str | None  # the root password, when just made
    token_file: Path


def bootstrap_root(session: Session, data_dir: Path) -> Bootstrap:
    """On first start: a root user with a random password and a token in a file only
    this OS user can read, so the local CLI can call the API."""
    token_file = data_dir / "manager" / "root-token"
    if session.scalar(select(User).limit(1)) is not None:
        return Bootstrap(False, None, token_file)
    password = secrets.token_urlsafe(12)
    root = create_user(session, "root", password, "root")
    _, clear = create_token(session, root, "local CLI")
    token_file.parent.mkdir(parents=True, exist_ok=True)
    temp = token_file.with_suffix(".tmp")
    temp.write_text(clear + "\n")
    temp.chmod(0o600)
    temp.replace(token_file)
    return Bootstrap(True, password, token_file)
