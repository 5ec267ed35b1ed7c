"""The registry client against a real distribution registry: anonymous, basic auth and a
bearer-token realm; manifests, indexes by platform, errors, and blob downloads."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from damselfly.errors import (
    InvalidInput,
    ManifestUnknown,
    PlatformNotFound,
    RegistryUnauthorized,
    RegistryUnreachable,
    UnsupportedMediaType,
)
from damselfly.source.auth import parse_challenges
from damselfly.source.http import HTTPSource
from damselfly.source.registry.client import RegistryClient, registry_headers
from damselfly.source.registry.manifests import Platform
from damselfly.source.registry.reference import ManifestURL, blob_digest
from damselfly.source.retry import RetryPolicy
from tests.support.databases import free_port
from tests.support.processes import run_damselfly, sha256_file
from tests.support.registry import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    PASSWORD,
    USER,
    PushedImage,
    Registry,
    available,
    layer,
    push_image,
    push_index,
)

pytestmark = pytest.mark.skipif(not available(), reason="needs docker-registry (./dev test)")
MiB = 1 << 20
AMD64, ARM64 = ("linux", "amd64"), ("linux", "arm64")
GOOD = registry_headers(username=USER, password=PASSWORD)
BAD = registry_headers(username=USER, password="not-it")


def _client() -> RegistryClient:
    return RegistryClient(HTTPSource(retry=RetryPolicy(attempts=2, first_backoff=0.05)))


def _repository(registry: Registry) -> str:
    # the token realm lets anyone pull public/*, and only alice anything else
    return "public/app" if registry.mode == "token" else "team/app"


@pytest.fixture(scope="module", params=["anonymous", "basic", "token"])
def registry(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Registry, dict[tuple[str, str], PushedImage]]]:
    """A registry holding a two-platform OCI index `v1` and a Docker list `v1-docker`."""
    server = Registry(request.param, tmp_path_factory.mktemp(f"registry-{request.param}"))
    server.start()
    try:
        repo = _repository(server)
        shared = layer(MiB, seed=3)
        _, images = push_index(
            server, repo, "v1", {AMD64: [layer(2 * MiB, 1), shared], ARM64: [layer(MiB, 2), shared]}
        )
        push_index(server, repo, "v1-docker", {AMD64: [layer(MiB, 4)]}, media=DOCKER_LIST)
        yield server, images
    finally:
        server.close()


def _creds(server: Registry) -> dict[str, str]:
    return GOOD if server.mode == "basic" else {}


def test_index_is_narrowed_by_platform_and_layers_become_blob_urls(
    registry: tuple[Registry, dict[tuple[str, str], PushedImage]],
) -> None:
    server, images = registry
    repo = _repository(server)
    url = server.manifest_url(repo, "v1")
    for platform, pushed in images.items():
        image = _client().resolve(
            url, platform=Platform.parse("/".join(platform)), headers=_creds(server)
        )
        assert image.platform == "/".join(platform)
        assert image.digest == pushed.manifest_digest
        assert [b.digest for b in image.blobs] == list(pushed.blobs)
        assert [b.url for b in image.blobs] == [server.blob_url(repo, d) for d in pushed.blobs]
        assert image.size == sum(pushed.sizes.values())
    # the same image by digest, and the Docker manifest list form
    by_digest = _client().resolve(
        server.manifest_url(repo, images[AMD64].manifest_digest), headers=_creds(server)
    )
    assert by_digest.platform == "" and by_digest.digest == images[AMD64].manifest_digest
    docker = _client().resolve(
        server.manifest_url(repo, "v1-docker"),
        platform=Platform.parse("linux/amd64"),
        headers=_creds(server),
    )
    assert docker.media_type == DOCKER_MANIFEST and len(docker.layers) == 1


def test_platform_not_in_the_index_lists_what_it_has(
    registry: tuple[Registry, dict[tuple[str, str], PushedImage]],
) -> None:
    server, _ = registry
    url = server.manifest_url(_repository(server), "v1")
    with pytest.raises(PlatformNotFound) as caught:
        _client().resolve(url, platform=Platform.parse("linux/s390x"), headers=_creds(server))
    assert "linux/s390x" in str(caught.value)
    assert "linux/amd64, linux/arm64" in str(caught.value)


def test_unknown_manifest_names_tag_and_repository(
    registry: tuple[Registry, dict[tuple[str, str], PushedImage]],
) -> None:
    server, _ = registry
    repo = _repository(server)
    with pytest.raises(ManifestUnknown) as caught:
        _client().resolve(server.manifest_url(repo, "no-such-tag"), headers=_creds(server))
    assert "no-such-tag" in str(caught.value) and repo in str(caught.value)
    assert "MANIFEST_UNKNOWN" in str(caught.value)


def test_credentials_are_required_checked_and_tokens_reused(
    registry: tuple[Registry, dict[tuple[str, str], PushedImage]],
) -> None:
    server, _ = registry
    repo = _repository(server)
    url = server.manifest_url(repo, "v1")
    amd64 = Platform.parse("linux/amd64")
    if server.mode == "anonymous":
        assert _client().resolve(url, platform=amd64).layers
        return
    if server.mode == "basic":
        with pytest.raises(RegistryUnauthorized, match="wants credentials"):
            _client().resolve(url, platform=amd64)
        with pytest.raises(RegistryUnauthorized, match="refused the credentials"):
            _client().resolve(url, platform=amd64, headers=BAD)
        assert _client().resolve(url, platform=amd64, headers=GOOD).layers
        return
    # token realm: public/* anonymously; a private repository only with alice's password
    assert server.tokens is not None
    server.tokens.requests.clear()
    client = _client()
    assert client.resolve(url, platform=amd64).layers
    assert client.resolve(url, platform=amd64).layers
    # one token for index, child manifest and a second resolve: it is reused
    assert server.tokens.requests == [{"user": None, "scope": [f"repository:{repo}:pull"]}]
    push_image(server, "private/app", "v1", [layer(MiB, 9)])
    private = server.manifest_url("private/app", "v1")
    with pytest.raises(RegistryUnauthorized, match="wants credentials"):
        _client().resolve(private)
    with pytest.raises(RegistryUnauthorized, match="refused the given credentials"):
        _client().resolve(private, headers=BAD)
    # a cached anonymous token never stands in for a wrong password
    with pytest.raises(RegistryUnauthorized):
        client.resolve(url, platform=amd64, headers=BAD)
    assert _client().resolve(private, headers=GOOD).layers


def test_unreachable_registry_says_so() -> None:
    url = f"http://127.0.0.1:{free_port()}/v2/app/manifests/v1"
    with pytest.raises(RegistryUnreachable, match=r"unreachable.*check the address"):
        _client().resolve(url)


_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"


class _LegacyRegistry(BaseHTTPRequestHandler):
    """A registry that still serves Docker schema 1 (the distribution package refuses
    to store one, so this one is played by a fixture)."""

    def do_GET(self) -> None:
        body = json.dumps({"schemaVersion": 1, "name": "legacy", "fsLayers": []}).encode()
        self.send_response(200)
        self.send_header(
            "Content-Type", "application/vnd.docker.distribution.manifest.v1+prettyjws"
        )
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_schema1_manifest_is_refused_with_what_is_supported() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LegacyRegistry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v2/legacy/manifests/v1"
        with pytest.raises(UnsupportedMediaType) as caught:
            _client().resolve(url)
        message = str(caught.value)
        assert "manifest.v1+prettyjws" in message and "OCI indexes" in message
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "bad",
    [
        "ftp://registry/v2/app/manifests/v1",
        "http://registry/v2/app/blobs/sha256:" + "a" * 64,
        "http://registry/app/manifests/v1",
        "http://registry/v2/App/manifests/v1",
        "http://registry/v2/app/manifests/",
        "http://registry/v2/app/manifests/v1?x=1",
        "not a url",
    ],
)
def test_bad_manifest_urls_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInput, match=r"manifests/3\.19"):
        ManifestURL.parse(bad)


_component = st.from_regex(r"[a-z0-9]{1,6}(?:[._-][a-z0-9]{1,4})?", fullmatch=True)


@given(
    host=st.sampled_from(["registry.example.com", "127.0.0.1:5000", "[::1]:5000"]),
    parts=st.lists(_component, min_size=1, max_size=3),
    ref=st.one_of(
        st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True),
        st.from_regex(r"sha256:[0-9a-f]{64}", fullmatch=True),
    ),
)
def test_manifest_urls_round_trip(host: str, parts: list[str], ref: str) -> None:
    repository = "/".join(parts)
    url = f"https://{host}/v2/{repository}/manifests/{ref}"
    parsed = ManifestURL.parse(url)
    assert (parsed.repository, parsed.reference, str(parsed)) == (repository, ref, url)
    digest = "sha256:" + "0" * 64
    assert str(blob_digest(parsed.blob_url(digest))) == digest


def test_challenges_parse_quoted_commas_and_several_schemes() -> None:
    header = (
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'scope="repository:a/b:pull,push"'
    )
    [bearer] = parse_challenges([header])
    assert bearer.scheme == "bearer"
    assert bearer.params["scope"] == "repository:a/b:pull,push"
    assert bearer.params["realm"] == "https://auth.example.com/token"
    basic, second = parse_challenges(['Basic realm="x", Bearer realm="https://t/token"'])
    assert (basic.scheme, second.scheme, second.params["realm"]) == (
        "basic",
        "bearer",
        "https://t/token",
    )


@pytest.mark.parametrize("mode", ["basic", "token"])
def test_get_of_a_blob_through_auth_verifies_its_digest(mode: str, tmp_path: Path) -> None:
    """`damselfly get` of a blob URL: credentials as a Basic header work for both
    registries (traded for a token where there is a realm); a corrupt blob in the
    registry's storage is refused and not kept."""
    server = Registry(mode, tmp_path / "registry").start()
    try:
        data = layer(9 * MiB, seed=11)
        pushed = push_image(server, "team/big", "v1", [data])
        url = server.blob_url("team/big", pushed.layers[0])
        basic = "Authorization: Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        out = tmp_path / "layer.tgz"

        refused = run_damselfly(
            "get", url, "-O", str(out), "--no-progress", data_dir=tmp_path / "d0"
        )
        assert refused.returncode == 1 and "wants credentials" in refused.stderr
        assert "Traceback" not in refused.stderr

        if server.tokens is not None:
            server.tokens.requests.clear()
        done = run_damselfly(
            "get", url, "-O", str(out), "--no-progress", "-H", basic, data_dir=tmp_path / "d1"
        )
        assert done.returncode == 0, done.stderr
        assert "sha256:" + sha256_file(out) == pushed.layers[0]
        if server.tokens is not None:  # three 4 MiB pieces read by threads: one token
            assert [r["user"] for r in server.tokens.requests] == ["alice"]

        # same length, other bytes: the registry serves them; the digest check must not
        blob = server.blob_file(pushed.layers[0])
        blob.write_bytes(bytes(len(data)))
        corrupt = run_damselfly(
            "get", url, "-O", str(tmp_path / "bad.tgz"), "--no-progress", "-H", basic,
            data_dir=tmp_path / "d2",
        )  # fmt: skip
        assert corrupt.returncode == 1
        assert "digest" in corrupt.stderr and pushed.layers[0] in corrupt.stderr
        assert not (tmp_path / "bad.tgz").exists()
        again = run_damselfly(
            "get", url, "-O", str(tmp_path / "bad.tgz"), "--no-progress", "-H", basic,
            data_dir=tmp_path / "d2",
        )  # fmt: skip
        assert again.returncode == 1, "a corrupt blob must not become a cache hit"
    finally:
        server.close()
