"""Resolving an image manifest URL to its blobs through the registry v2 API.

Why not oras-py: it reads manifests but does not narrow an index by platform, keeps
one token per client whatever the repository, has no way to pass a caller's
Authorization header, and brings requests and jsonschema. The v2 read path is three
requests; doing it on our own HTTP source means manifests, preheat and back-to-source
blob reads share one auth flow (`damselfly.source.auth`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from damselfly.errors import (
    ManifestUnknown,
    RegistryUnauthorized,
    RegistryUnreachable,
    SourceError,
    UnsupportedMediaType,
)
from damselfly.source.auth import authorization, basic_authorization, with_authorization
from damselfly.source.http import HTTPSource
from damselfly.source.registry.manifests import (
    ACCEPT,
    INDEXES,
    Image,
    Platform,
    image_from_manifest,
    parse_document,
    select_platform,
)
from damselfly.source.registry.reference import ManifestURL


def registry_headers(
    headers: Mapping[str, str] | None = None,
    username: str | None = None,
    password: str | None = None,
) -> dict[str, str]:
    """The caller's headers, with Basic credentials when a username is given."""
    merged = dict(headers or {})
    if username:
        merged = with_authorization(merged, basic_authorization(username, password or ""))
    return merged


class RegistryClient:
    def __init__(self, source: HTTPSource) -> None:
        self.source = source

    def resolve(
        self,
        url: str,
        *,
        platform: Platform | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Image:
        """The image a manifest URL names, narrowed to `platform` (default: this host's)."""
        ref = ManifestURL.parse(url)
        wanted = platform or Platform.of_this_host()
        headers = dict(headers or {})
        media_type, document, digest = self._manifest(ref, ref.reference, headers)
        chosen = ""
        if media_type in INDEXES:
            entry = select_platform(document, wanted, f"{ref.repository}:{ref.reference}")
            chosen = str(wanted)
            child = str(entry.get("digest", ""))
            media_type, document, digest = self._manifest(ref, child, headers)
            if media_type in INDEXES:
                raise UnsupportedMediaType(
                    f"the {wanted} entry of {url} is itself an index; damselfly follows one level"
                )
        return image_from_manifest(
            document,
            url=url,
            digest=digest,
            media_type=media_type,
            platform=chosen,
            blob_url=ref.blob_url,
            where=ref.manifest_url(digest),
        )

    def _manifest(
        self, ref: ManifestURL, reference: str, headers: dict[str, str]
    ) -> tuple[str, dict, str]:
        url = ref.manifest_url(reference)
        try:
            answer = self.source.fetch_document(url, {**headers, "Accept": ACCEPT})
        except SourceError as exc:
            raise _registry_error(exc, ref) from exc
        if answer.status != 200:
            raise _status_error(answer.status, answer.body, ref, reference, headers)
        digest = "sha256:" + hashlib.sha256(answer.body).hexdigest()
        if ":" in reference and reference != digest:
            raise ManifestUnknown(
                f"manifest {reference} of {ref.repository} on {ref.registry} came back with "
                f"digest {digest}; the registry or a proxy altered it"
            )
        content_type = answer.headers.get("Content-Type", "")
        media_type, document = parse_document(answer.body, content_type, url)
        return media_type, document, digest


def _registry_codes(body: bytes) -> str:
    try:
        errors = json.loads(body).get("errors") or []
        return ", ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
    except (ValueError, AttributeError, TypeError):
        return body[:200].decode(errors="replace").strip()


def _registry_error(exc: SourceError, ref: ManifestURL) -> Exception:
    if exc.unreachable:
        return RegistryUnreachable(
            f"registry {ref.registry} is unreachable: {exc}; check the address and that it is up"
        )
    if exc.status in (401, 403):  # the token service refused: its message says how
        return RegistryUnauthorized(f"registry {ref.registry}: {exc}")
    return RegistryUnreachable(f"registry {ref.registry} failed for {ref}: {exc}")


def _unauthorized(ref: ManifestURL, headers: Mapping[str, str], said: str) -> Exception:
    if authorization(headers):
        return RegistryUnauthorized(
            f"registry {ref.registry} refused the credentials for {ref.repository} ({said}); "
            "check the username and password"
        )
    return RegistryUnauthorized(
        f"registry {ref.registry} wants credentials for {ref.repository} ({said}); "
        "pass --username and --password"
    )


def _status_error(
    status: int, body: bytes, ref: ManifestURL, reference: str, headers: Mapping[str, str]
) -> Exception:
    said = _registry_codes(body) or f"HTTP {status}"
    if status in (401, 403):
        return _unauthorized(ref, headers, said)
    if status == 404:
        return ManifestUnknown(
            f"manifest {reference} of {ref.repository} is not on {ref.registry} ({said}); "
            "check the repository and the tag or digest"
        )
    return RegistryUnreachable(
        f"registry {ref.registry} answered {status} for {ref.manifest_url(reference)} ({said})"
    )
