"""A real CNCF distribution registry (Debian's docker-registry) on 127.0.0.1 for tests.

Three modes: anonymous, htpasswd basic auth, and a bearer-token realm. The token
service is a small in-process fixture (the registry itself is real): it issues RS256
JWTs, signed with a throwaway self-signed certificate the registry trusts, to the
user `alice` for any repository and to anyone for `public/*` (pull only).
Images are pushed through the registry's HTTP API, the way a client would.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import random
import shutil
import subprocess
import tarfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlparse

import bcrypt
import jwt
import urllib3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.support.databases import free_port
from tests.support.processes import stop

USER, PASSWORD = "alice", "wonderland"
SERVICE = "damselfly-test-registry"
ISSUER = "damselfly-test-token-issuer"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG = "application/vnd.oci.image.config.v1+json"


def available() -> bool:
    return shutil.which("docker-registry") is not None


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class TokenService:
    """The bearer realm: `GET /token?service=&scope=` → a JWT the registry accepts."""

    def __init__(self, directory: Path) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "damselfly test tokens")])
        now = datetime.now(UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_file = directory / "token-cert.pem"
        self.cert_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.requests: list[dict[str, Any]] = []
        self.lifetime = 300
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlparse(self.path).query)
                user = service.authenticate(self.headers.get("Authorization"))
                service.requests.append({"user": user, "scope": query.get("scope", [])})
                if user is False:
                    self.send_response(401)
                    self.end_headers()
                    return
                body = json.dumps(
                    {"token": service.issue(user, query.get("scope", [])),
                     "expires_in": service.lifetime}
                ).encode()  # fmt: skip
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/token"

    @staticmethod
    def authenticate(header: str | None) -> str | bool | None:
        """The user name, None for anonymous, False for wrong credentials."""
        if not header:
            return None
        try:
            user, _, password = base64.b64decode(header.split(" ", 1)[1]).decode().partition(":")
        except (ValueError, IndexError):
            return False
        return user if (user, password) == (USER, PASSWORD) else False

    def issue(self, user: str | None, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            for one in scope.split(" "):
                kind, _, rest = one.partition(":")
                name, _, actions = rest.rpartition(":")
                allowed = actions.split(",") if user else ["pull"]
                if user is None and not name.startswith("public/"):
                    allowed = []
                wanted = [a for a in actions.split(",") if a in allowed]
                access.append({"type": kind, "name": name, "actions": wanted})
        now = int(time.time())
        claims = {
            "iss": ISSUER, "sub": user or "", "aud": SERVICE, "exp": now + self.lifetime,
            "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex, "access": access,
        }  # fmt: skip
        der = self.cert.public_bytes(serialization.Encoding.DER)
        headers = {"x5c": [base64.b64encode(der).decode()]}
        return jwt.encode(claims, self.key, algorithm="RS256", headers=headers)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Registry:
    mode: str  # "anonymous", "basic" or "token"
    root: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    tokens: TokenService | None = None
    http: urllib3.PoolManager = field(default_factory=lambda: urllib3.PoolManager(maxsize=4))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def manifest_url(self, repository: str, reference: str) -> str:
        return f"http://{self.address}/v2/{repository}/manifests/{reference}"

    def blob_url(self, repository: str, digest: str) -> str:
        return f"http://{self.address}/v2/{repository}/blobs/{digest}"

    def blob_file(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob (tests corrupt it to check verification)."""
        hexa = digest.split(":", 1)[1]
        return self.root / "storage/docker/registry/v2/blobs/sha256" / hexa[:2] / hexa / "data"

    def start(self) -> Registry:
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.root / "storage")},
                "delete": {"enabled": True},
            },
            "http": {"addr": self.address, "secret": "damselfly-test"},
        }
        if self.mode == "basic":
            htpasswd = self.root / "htpasswd"
            hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
            htpasswd.write_text(f"{USER}:{hashed}\n")
            config["auth"] = {"htpasswd": {"realm": "damselfly-test", "path": str(htpasswd)}}
        elif self.mode == "token":
            self.tokens = TokenService(self.root)
            config["auth"] = {
                "token": {
                    "realm": self.tokens.realm,
                    "service": SERVICE,
                    "issuer": ISSUER,
                    "rootcertbundle": str(self.tokens.cert_file),
                }
            }
        (self.root / "config.yml").write_text(json.dumps(config))  # JSON is YAML
        log = (self.root / "registry.log").open("wb")
        self.process = subprocess.Popen(
            ["docker-registry", "serve", str(self.root / "config.yml")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log()}")
            try:
                resp = self.http.request("GET", f"http://{self.address}/v2/", timeout=1.0)
                if resp.status in (200, 401):
                    return self
            except urllib3.exceptions.HTTPError:
                pass
            time.sleep(0.05)
        self.close()
        raise RuntimeError(f"docker-registry did not answer in 20s: {self.log()}")

    def log(self) -> str:
        path = self.root / "registry.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def close(self) -> None:
        if self.process is not None:
            stop(self.process)
        if self.tokens is not None:
            self.tokens.close()

    # pushing, as a client would
    def _auth(self, repository: str) -> dict[str, str]:
        if self.mode == "basic":
            raw = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            return {"Authorization": f"Basic {raw}"}
        if self.mode == "token":
            assert self.tokens is not None
            token = self.tokens.issue(USER, [f"repository:{repository}:pull,push"])
            return {"Authorization": f"Bearer {token}"}
        return {}

    def push_blob(self, repository: str, data: bytes) -> str:
        digest = _digest(data)
        auth = self._auth(repository)
        base = f"http://{self.address}"
        resp = self.http.request("POST", f"{base}/v2/{repository}/blobs/uploads/", headers=auth)
        assert resp.status == 202, (resp.status, resp.data)
        location = urljoin(base, resp.headers["Location"])
        sep = "&" if "?" in location else "?"
        resp = self.http.request(
            "PUT",
            f"{location}{sep}digest={digest}",
            body=data,
            headers={**auth, "Content-Type": "application/octet-stream"},
        )
        assert resp.status == 201, (resp.status, resp.data)
        return digest

    def push_manifest(self, repository: str, reference: str, manifest: dict, media: str) -> str:
        body = json.dumps(manifest).encode()
        resp = self.http.request(
            "PUT",
            self.manifest_url(repository, reference),
            body=body,
            headers={**self._auth(repository), "Content-Type": media},
        )
        assert resp.status == 201, (resp.status, resp.data)
        return _digest(body)


def layer(size: int, seed: int) -> bytes:
    """A real gzip'd tar of one file of random bytes (compresses to about `size`)."""
    data = random.Random(seed).randbytes(size)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo(f"layer-{seed}.bin")
        info.size = len(data)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), compresslevel=1, mtime=0)


@dataclass(frozen=True)
class PushedImage:
    repository: str
    tag: str
    manifest_digest: str
    config: str
    layers: tuple[str, ...]
    sizes: dict[str, int]
    manifest_size: int

    @property
    def blobs(self) -> tuple[str, ...]:
        return (self.config, *self.layers)


def push_image(
    registry: Registry,
    repository: str,
    reference: str,
    layers: list[bytes],
    *,
    platform: tuple[str, str] = ("linux", "amd64"),
    media: str = OCI_MANIFEST,
) -> PushedImage:
    """One single-platform image; `reference` is its tag (or, for an index's child, '')."""
    config = json.dumps(
        {
            "os": platform[0],
            "architecture": platform[1],
            "rootfs": {"type": "layers", "diff_ids": [_digest(x) for x in layers]},
        }
    ).encode()
    config_digest = registry.push_blob(repository, config)
    layer_digests = tuple(registry.push_blob(repository, x) for x in layers)
    docker = media == DOCKER_MANIFEST
    manifest = {
        "schemaVersion": 2,
        "mediaType": media,
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json" if docker else CONFIG,
            "digest": config_digest,
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip"
                if docker
                else LAYER,
                "digest": d,
                "size": len(x),
            }
            for d, x in zip(layer_digests, layers, strict=True)
        ],
    }
    body = json.dumps(manifest).encode()
    digest = registry.push_manifest(repository, reference or _digest(body), manifest, media)
    sizes = {config_digest: len(config)} | {
        d: len(x) for d, x in zip(layer_digests, layers, strict=True)
    }
    return PushedImage(
        repository, reference, digest, config_digest, layer_digests, sizes, len(body)
    )


def push_index(
    registry: Registry,
    repository: str,
    tag: str,
    images: dict[tuple[str, str], list[bytes]],
    *,
    media: str = OCI_INDEX,
) -> tuple[str, dict[tuple[str, str], PushedImage]]:
    """A multi-platform index over one image per platform; (index digest, images)."""
    child_media = DOCKER_MANIFEST if media == DOCKER_LIST else OCI_MANIFEST
    pushed = {
        p: push_image(registry, repository, "", layers, platform=p, media=child_media)
        for p, layers in images.items()
    }
    index = {
        "schemaVersion": 2,
        "mediaType": media,
        "manifests": [
            {
                "mediaType": child_media,
                "digest": image.manifest_digest,
                "size": image.manifest_size,
                "platform": {"os": p[0], "architecture": p[1]},
            }
            for p, image in pushed.items()
        ],
    }
    return registry.push_manifest(repository, tag, index, media), pushed
