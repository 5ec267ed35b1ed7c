"""What every route needs: a database session, the caller, their role."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from damselfly.jobs.engine import JobEngine
from damselfly.manager.auth import user_for_token
from damselfly.manager.models import User

if TYPE_CHECKING:
    from damselfly.media.service import MediaService
    from damselfly.media.workflows import Workflows


@dataclass(frozen=True, slots=True)
class ManagerContext:
    sessions: sessionmaker[Session]
    data_dir: Path
    jobs: JobEngine
    validate: Callable[[str, Mapping[str, Any]], None]  # a job's args, before it is made
    seal: Callable[[dict[str, Any]], dict[str, Any]]  # credentials encrypted for the row
    unseal: Callable[[dict[str, Any]], dict[str, Any]] = dict  # the worker's side of seal
    media: MediaService | None = None  # None: this manager does not process media
    workflows: Workflows | None = None


_bearer = HTTPBearer(auto_error=False, description="A personal access token")


def context(request: Request) -> ManagerContext:
    return request.app.state.context


def db(ctx: Annotated[ManagerContext, Depends(context)]) -> Iterator[Session]:
    """One session per request, committed when the route returns normally."""
    with ctx.sessions() as session:
        yield session
        session.commit()


# scope="function": commit before the response goes out, so a client that acts on the
# answer (revoke, then use the token) never races our own commit
DB = Annotated[Session, Depends(db, scope="function")]


def current_user(
    session: DB, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> User:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            401,
            "an Authorization: Bearer <token> header is required; root's token is in "
            "<data-dir>/manager/root-token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    user = user_for_token(session, credentials.credentials)
    # commit last_used_at now: an open write would lock SQLite against the job engine
    session.commit()
    if user is None:
        raise HTTPException(
            401, "the token is unknown or revoked", headers={"WWW-Authenticate": "Bearer"}
        )
    return user


def root_user(user: Annotated[User, Depends(current_user)]) -> User:
    if user.role != "root":
        raise HTTPException(403, f"user {user.name!r} (role {user.role}) may only read")
    return user


# a row ID in a path: what the databases can hold (a larger one is a 422, not a 500)
RowId = Annotated[int, PathParam(ge=1, le=2**63 - 1)]
Reader = Annotated[User, Depends(current_user)]
Root = Annotated[User, Depends(root_user)]
