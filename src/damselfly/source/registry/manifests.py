"""Image manifests: Docker v2 schema 2, OCI, and the lists and indexes narrowed by platform."""

from __future__ import annotations

import json
import platform as host_platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from damselfly.errors import InvalidInput, PlatformNotFound, UnsupportedMediaType

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
IMAGE_MANIFESTS = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEXES = (DOCKER_LIST, OCI_INDEX)
ACCEPT = ", ".join((*IMAGE_MANIFESTS, *INDEXES))

# what `uname -m` says → the architecture names images use
_MACHINES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.strip().lower().split("/")
        if not 2 <= len(parts) <= 3 or not all(parts):
            raise InvalidInput(
                f"invalid platform {text!r}: use os/arch or os/arch/variant, e.g. linux/arm64/v8"
            )
        return cls(parts[0], _MACHINES.get(parts[1], parts[1]), parts[2] if len(parts) == 3 else "")

    @classmethod
    def of_this_host(cls) -> Platform:
        machine = host_platform.machine().lower()
        variant = {"armv7l": "v7", "armv6l": "v6"}.get(machine, "")
        return cls(host_platform.system().lower(), _MACHINES.get(machine, machine), variant)

    def matches(self, described: Mapping[str, Any]) -> bool:
        os_ = str(described.get("os", "")).lower()
        arch = str(described.get("architecture", "")).lower()
        variant = str(described.get("variant", "")).lower()
        if (os_, arch) != (self.os, self.architecture):
            return False
        if not self.variant:
            return True
        # arm64 images often leave out the default variant v8
        default_arm64 = arch == "arm64" and {variant, self.variant} <= {"", "v8"}
        return variant == self.variant or default_arm64

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def _described(entry: Mapping[str, Any]) -> str:
    p = entry.get("platform") or {}
    return "/".join(str(p.get(k)) for k in ("os", "architecture", "variant") if p.get(k))


@dataclass(frozen=True, slots=True)
class Blob:
    digest: str
    size: int
    media_type: str
    url: str


@dataclass(frozen=True, slots=True)
class Image:
    """One platform's image: its manifest, config and layers as blob URLs."""

    url: str  # the manifest URL the user gave
    digest: str  # the platform manifest's digest
    media_type: str
    platform: str  # chosen from an index, or "" for a single-platform manifest
    config: Blob
    layers: tuple[Blob, ...]

    @property
    def blobs(self) -> tuple[Blob, ...]:
        """Config first, then layers: what a pull fetches."""
        return (self.config, *self.layers)

    @property
    def size(self) -> int:
        return sum(b.size for b in self.blobs)


def parse_document(body: bytes, content_type: str, where: str) -> tuple[str, dict[str, Any]]:
    """(media type, parsed JSON) of a manifest or index, refusing what we cannot read."""
    try:
        document = json.loads(body)
    except ValueError:
        raise UnsupportedMediaType(
            f"{where} did not answer with a JSON manifest (Content-Type {content_type!r})"
        ) from None
    if not isinstance(document, dict):
        raise UnsupportedMediaType(f"{where} answered JSON that is not a manifest")
    media_type = content_type.split(";")[0].strip().lower()
    if media_type not in (*IMAGE_MANIFESTS, *INDEXES):
        # OCI documents may be served as plain JSON; their own field or shape decides
        media_type = str(document.get("mediaType") or "")
        if not media_type:
            if "manifests" in document:
                media_type = OCI_INDEX
            elif "layers" in document and "config" in document:
                media_type = OCI_MANIFEST
    if media_type not in (*IMAGE_MANIFESTS, *INDEXES):
        shown = media_type or content_type or "none"
        raise UnsupportedMediaType(
            f"{where} is of media type {shown}, which damselfly does not read; it reads Docker "
            "v2 schema 2 and OCI image manifests, Docker manifest lists and OCI indexes "
            "(push the image again with a current client to convert schema 1)"
        )
    return media_type, document


def select_platform(index: Mapping[str, Any], wanted: Platform, where: str) -> Mapping[str, Any]:
    """The index entry for `wanted`; PlatformNotFound listing what the index has."""
    entries = [e for e in index.get("manifests") or [] if isinstance(e, dict)]
    matching = [e for e in entries if wanted.matches(e.get("platform") or {})]
    if not matching:
        offered = sorted({_described(e) for e in entries if e.get("platform")} - {""})
        raise PlatformNotFound(
            f"platform {wanted} is not in the image index of {where}; it has "
            f"{', '.join(offered) or 'no platforms'} (choose one with --platform)"
        )
    # with no variant asked, prefer the entry that names none (the default variant)
    matching.sort(key=lambda e: bool((e.get("platform") or {}).get("variant")))
    return matching[0]


def _blob(entry: Any, blob_url: Callable[[str], str], where: str) -> Blob:
    if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str):
        raise UnsupportedMediaType(f"{where} has a config or layer without a digest")
    size = entry.get("size")
    return Blob(
        entry["digest"],
        size if isinstance(size, int) and size >= 0 else 0,
        str(entry.get("mediaType", "")),
        blob_url(entry["digest"]),
    )


def image_from_manifest(
    document: Mapping[str, Any],
    *,
    url: str,
    digest: str,
    media_type: str,
    platform: str,
    blob_url: Callable[[str], str],
    where: str,
) -> Image:
    layers = document.get("layers")
    if not isinstance(layers, list):
        raise UnsupportedMediaType(f"{where} has no layer list")
    return Image(
        url=url,
        digest=digest,
        media_type=media_type,
        platform=platform,
        config=_blob(document.get("config"), blob_url, where),
        layers=tuple(_blob(layer, blob_url, where) for layer in layers),
    )
