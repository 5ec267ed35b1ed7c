"""Task, host and peer IDs: the only place in damselfly where IDs are computed.

Task IDs are byte-for-byte compatible with the Dragonfly client (v1.5): fields are fed
to SHA-256 one after another with no separator, and an absent or empty field adds
nothing. Upstream shipped several ID functions that disagreed (dragonfly#4130,
#4639); every part of damselfly calls this module instead.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl

import ada_url

from damselfly.errors import InvalidInput

TASK_TYPE_STANDARD = "STANDARD"

# Query parameters that carry signatures or expiry and differ between requests for
# the same object; used whenever the user gives no list of their own.
DEFAULT_FILTERED_QUERY_PARAMS: tuple[str, ...] = (
    # S3
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
    "X-Amz-User-Agent",
    # GCS
    "X-Goog-Algorithm",
    "X-Goog-Credential",
    "X-Goog-Date",
    "X-Goog-Expires",
    "X-Goog-SignedHeaders",
    "X-Goog-Signature",
    # OSS
    "OSSAccessKeyId",
    "Expires",
    "Signature",
    "SecurityToken",
    # OBS
    "AccessKeyId",
    "Signature",
    "Expires",
    "X-Obs-Date",
    "X-Obs-Security-Token",
    # COS
    "q-sign-algorithm",
    "q-ak",
    "q-sign-time",
    "q-key-time",
    "q-header-list",
    "q-url-param-list",
    "q-signature",
    "x-cos-security-token",
    # containerd
    "ns",
)

_TASK_ID_RE = re.compile(r"^[0-9a-f]{64}$")
# Bytes that form-urlencoding (the url crate's byte_serialize) leaves as they are.
_FORM_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789*-._")


def _form_encode(text: str) -> str:
    out: list[str] = []
    for byte in text.encode("utf-8"):
        if byte in _FORM_SAFE:
            out.append(chr(byte))
        elif byte == 0x20:
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def parse_url(url: str) -> ada_url.URL:
    """Parse a URL the WHATWG way, or raise InvalidInput naming the URL."""
    if not ada_url.check_url(url):
        raise InvalidInput(f"malformed URL {url!r}: expected something like https://host/path")
    return ada_url.URL(url)


def normalize_url(url: str, filtered_query_params: Iterable[str] | None = None) -> str:
    """The URL as it is hashed into a task ID.

    Scheme and host lower-cased, default port dropped, empty path made `/`, query
    pairs whose key is in the filter list removed (others keep their order and are
    re-encoded as form data), and a bare `/` path dropped from the end.
    """
    filters = set(
        DEFAULT_FILTERED_QUERY_PARAMS if filtered_query_params is None else filtered_query_params
    )
    parsed = parse_url(url)
    query = parsed.search[1:]  # without "?"
    pairs = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in filters]
    parsed.search = "&".join(f"{_form_encode(k)}={_form_encode(v)}" for k, v in pairs)
    href = parsed.href
    if parsed.pathname == "/" and href.endswith("/"):
        href = href.rstrip("/")
    return href


@dataclass(frozen=True, slots=True)
class TaskIdentity:
    """What a task ID is computed from; the same fields a `get` or a job takes."""

    url: str = ""
    tag: str = ""
    application: str = ""
    piece_length: int | None = None  # hashed only when the user gave it
    filtered_query_params: Sequence[str] | None = None  # None means the default list
    content_for_calculating_task_id: str | None = None
    revision: str = ""  # upstream uses this for model hubs only


def task_id(identity: TaskIdentity) -> str:
    """The Dragonfly-compatible task ID for `identity`."""
    if identity.content_for_calculating_task_id:
        return content_task_id(identity.content_for_calculating_task_id)
    if not identity.url:
        raise InvalidInput("a task ID needs a URL or content for calculating the task ID")
    hasher = hashlib.sha256()
    hasher.update(normalize_url(identity.url, identity.filtered_query_params).encode())
    for part in (identity.tag, identity.application, identity.revision):
        if part:
            hasher.update(part.encode())
    if identity.piece_length is not None:
        hasher.update(str(identity.piece_length).encode())
    hasher.update(TASK_TYPE_STANDARD.encode())
    return hasher.hexdigest()


def content_task_id(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


def is_task_id(value: str) -> bool:
    return bool(_TASK_ID_RE.match(value))


def check_task_id(value: str) -> str:
    if not is_task_id(value):
        raise InvalidInput(f"invalid task ID {value!r}: expected 64 lower-case hex characters")
    return value


def host_id(ip: str, hostname: str, *, seed: bool = False) -> str:
    return f"{ip}-{hostname}-seed" if seed else f"{ip}-{hostname}"


def peer_id(ip: str, hostname: str, *, seed: bool = False) -> str:
    base = f"{ip}-{hostname}-{uuid.uuid4()}"
    return f"{base}-seed" if seed else base
