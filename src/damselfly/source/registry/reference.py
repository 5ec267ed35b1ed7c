"""Registry URLs: `scheme://registry/v2/<repository>/manifests/<tag|digest>` and blobs."""

from __future__ import annotations

import re
from dataclasses import dataclass

import urllib3

from damselfly import digest as digests
from damselfly.errors import InvalidInput

# the distribution spec's grammar for repository names, tags and digests
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = rf"{_COMPONENT}(?:/{_COMPONENT})*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}"
_MANIFEST_PATH = re.compile(rf"^/v2/(?P<repo>{_REPOSITORY})/manifests/(?P<ref>{_DIGEST}|{_TAG})$")
_BLOB_PATH = re.compile(rf"^/v2/(?P<repo>{_REPOSITORY})/blobs/(?P<digest>{_DIGEST})$")
_EXAMPLE = "https://registry.example.com/v2/library/alpine/manifests/3.19"


@dataclass(frozen=True, slots=True)
class ManifestURL:
    scheme: str
    registry: str  # host[:port]
    repository: str
    reference: str  # a tag or a digest

    @classmethod
    def parse(cls, url: str) -> ManifestURL:
        """Parse an image manifest URL; InvalidInput that says what a good one is."""
        try:
            parsed = urllib3.util.parse_url(url.strip())
        except (urllib3.exceptions.LocationParseError, ValueError):
            parsed = None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
            raise InvalidInput(
                f"image manifest URL {url!r} is not an http(s) URL; use the form {_EXAMPLE}"
            )
        if parsed.query or parsed.fragment:
            raise InvalidInput(
                f"image manifest URL {url!r} has a query or fragment; use the form {_EXAMPLE}"
            )
        match = _MANIFEST_PATH.match(parsed.path or "")
        if not match:
            raise InvalidInput(
                f"image manifest URL {url!r} does not name /v2/<repository>/manifests/<tag or "
                f"digest>; use the form {_EXAMPLE}"
            )
        return cls(parsed.scheme, parsed.netloc or "", match["repo"], match["ref"])

    @property
    def is_digest(self) -> bool:
        return ":" in self.reference

    def base(self) -> str:
        return f"{self.scheme}://{self.registry}/v2/{self.repository}"

    def manifest_url(self, reference: str | None = None) -> str:
        return f"{self.base()}/manifests/{reference or self.reference}"

    def blob_url(self, digest: str) -> str:
        return f"{self.base()}/blobs/{digest}"

    def __str__(self) -> str:
        return self.manifest_url()


def blob_digest(url: str) -> digests.Digest | None:
    """The digest a registry blob URL names, when it is one damselfly can verify."""
    try:
        path = urllib3.util.parse_url(url).path or ""
    except (urllib3.exceptions.LocationParseError, ValueError):
        return None
    match = _BLOB_PATH.match(path)
    if not match:
        return None
    try:
        return digests.parse(match["digest"])
    except InvalidInput:
        return None  # an algorithm we do not compute: served as is, like any URL
