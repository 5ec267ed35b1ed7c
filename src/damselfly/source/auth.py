"""Answering an origin's 401 with the bearer-token challenge flow.

Container registries answer a request without a token with `401` and
`WWW-Authenticate: Bearer realm=…,service=…,scope=…`. The client asks the realm for a
token (with the user's Basic credentials when it has them, anonymously otherwise) and
repeats the request with `Authorization: Bearer <token>`. A token is kept for its
lifetime and sent up front on every later request to the same repository, so the
pieces of a layer, read by several threads, pay for it once.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

import urllib3

from damselfly.errors import SourceError

# `name=value` or `name="quoted, value"` after an auth scheme (RFC 7235 auth-params)
_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')
_SCHEME = re.compile(r"\s*,?\s*([A-Za-z0-9_.-]+)(?:\s+|$)")
_REPOSITORY_PATH = re.compile(r"^/v2/(.+?)/(?:manifests|blobs|tags)/")
_DEFAULT_LIFETIME = 60.0  # seconds, when the token endpoint does not say (distribution spec)
_MARGIN = 10.0  # renew this long before expiry: a piece read must not start with a dying token


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str  # lower case: "bearer", "basic"
    params: Mapping[str, str]


def parse_challenges(values: Iterable[str]) -> list[Challenge]:
    """Every challenge in the WWW-Authenticate header values, in order."""
    challenges: list[Challenge] = []
    for value in values:
        pos = 0
        while pos < len(value):
            scheme = _SCHEME.match(value, pos)
            if not scheme:
                break
            pos = scheme.end()
            params: dict[str, str] = {}
            while pos < len(value):
                param = _PARAM.match(value, pos)
                if not param:
                    break
                raw = param.group(2)
                if raw.startswith('"'):
                    raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
                params[param.group(1).lower()] = raw
                pos = param.end()
            challenges.append(Challenge(scheme.group(1).lower(), params))
    return challenges


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    expires: float  # time.monotonic()


def _scope_key(url: str, credentials: str | None) -> tuple[str, str, str]:
    """(origin, repository, whose): the requests one token covers. Tokens of different
    credentials never mix, so a wrong password is never hidden by a cached token."""
    parsed = urllib3.util.parse_url(url)
    origin = f"{parsed.scheme}://{parsed.netloc}"
    match = _REPOSITORY_PATH.match(parsed.path or "")
    return origin, match.group(1) if match else "", _whose(credentials)


def _whose(credentials: str | None) -> str:
    return hashlib.sha256(credentials.encode()).hexdigest() if credentials else ""


class TokenAuth:
    """Bearer tokens for one client, shared by its threads."""

    def __init__(self, pool: urllib3.PoolManager) -> None:
        self._pool = pool
        self._lock = threading.Lock()
        # (realm, service, scope, whose) → token; (origin, repository, whose) → that key
        self._tokens: dict[tuple[str, str, str, str], _Token] = {}
        self._by_scope: dict[tuple[str, str, str], tuple[str, str, str, str]] = {}

    def prepare(self, url: str, headers: Mapping[str, str]) -> dict[str, str]:
        """The headers to send: with a live token for this repository, if one is known."""
        merged = dict(headers)
        with self._lock:
            key = self._by_scope.get(_scope_key(url, authorization(headers)))
            token = self._tokens.get(key) if key else None
        if token is not None and token.expires > time.monotonic():
            return with_authorization(merged, f"Bearer {token.value}")
        return merged

    def answer(
        self, url: str, sent: Mapping[str, str], user: Mapping[str, str], challenges: list[str]
    ) -> dict[str, str] | None:
        """Headers to repeat a 401'd request with, or None when a token would not help.

        `sent` is what the refused request carried, `user` what the caller gave (its
        Basic credentials, if any, are what the token endpoint gets).
        """
        bearer = next((c for c in parse_challenges(challenges) if c.scheme == "bearer"), None)
        if bearer is None:
            return None
        if not bearer.params.get("realm", "").startswith(("http://", "https://")):
            return None  # not a token realm (RFC 6750 resource servers name a realm only)
        credentials = authorization(user)
        if credentials is not None and credentials.lower().startswith("bearer "):
            return None  # the caller's own token was refused: fetching ours would hide that
        params = bearer.params
        key = (
            params["realm"],
            params.get("service", ""),
            params.get("scope", ""),
            _whose(credentials),
        )
        refused = authorization(sent)
        with self._lock:
            token = self._tokens.get(key)
            # another thread may have fetched a token since this request left
            usable = (
                token is not None
                and token.expires > time.monotonic()
                and refused != f"Bearer {token.value}"
            )
            if not usable:
                token = self._fetch(url, key, credentials)
                self._tokens[key] = token
            self._by_scope[_scope_key(url, credentials)] = key
        assert token is not None
        return with_authorization(sent, f"Bearer {token.value}")

    def _fetch(self, url: str, key: tuple[str, str, str, str], credentials: str | None) -> _Token:
        realm, service, scope, _ = key
        query = urlencode({k: v for k, v in (("service", service), ("scope", scope)) if v})
        token_url = f"{realm}{'&' if '?' in realm else '?'}{query}" if query else realm
        headers = {"Accept": "application/json"}
        if credentials is not None:
            headers["Authorization"] = credentials
        try:
            resp = self._pool.request("GET", token_url, headers=headers, timeout=15.0)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise SourceError(
                f"cannot get a token from {realm} for {url}: {exc}; check that the registry's "
                "token service is reachable",
                url=url,
                retryable=True,
            ) from exc
        if resp.status in (401, 403):
            who = "the given credentials" if credentials else "anonymous access"
            raise SourceError(
                f"token service {realm} refused {who} for {scope or url} "
                f"({resp.status}); check the username and password",
                url=url,
                status=resp.status,
                reason=resp.reason or "",
            )
        try:
            body = json.loads(resp.data)
            value = body.get("token") or body.get("access_token")
            lifetime = float(body.get("expires_in") or _DEFAULT_LIFETIME)
        except (ValueError, AttributeError, TypeError):
            value, lifetime = None, 0.0
        if resp.status != 200 or not value:
            raise SourceError(
                f"token service {realm} answered {resp.status} without a token for {url}",
                url=url,
                status=resp.status,
                retryable=resp.status >= 500,
            )
        return _Token(value, time.monotonic() + max(1.0, lifetime - _MARGIN))


def authorization(headers: Mapping[str, str]) -> str | None:
    """The Authorization header's value, whatever its case."""
    return next((v for k, v in headers.items() if k.lower() == "authorization"), None)


def with_authorization(headers: Mapping[str, str], value: str) -> dict[str, str]:
    kept = {k: v for k, v in headers.items() if k.lower() != "authorization"}
    kept["Authorization"] = value
    return kept


def basic_authorization(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
