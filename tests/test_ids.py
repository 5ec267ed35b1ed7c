from __future__ import annotations

import hashlib
import re
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from damselfly import ids
from damselfly.errors import InvalidInput
from tests.support.processes import run_damselfly

UPSTREAM_VECTORS = [
    (
        ids.TaskIdentity(url="https://example.com", tag="foo", application="bar"),
        "06408fbf247ddaca478f8cb9565fe5591c28efd0994b8fea80a6a87d3203c5ca",
    ),
    (
        ids.TaskIdentity(url="https://example.com", piece_length=1024),
        "9f7c9aafbc6f30f8f41a96ca77eeae80c5b60964b3034b0ee43ccf7b2f9e52b8",
    ),
    (
        ids.TaskIdentity(
            url="https://example.com?foo=foo&bar=bar", filtered_query_params=("foo", "bar")
        ),
        "457b4328cde278e422c9e243f7bfd1e97f511fec43a80f535cf6b0ef6b086776",
    ),
]


@pytest.mark.parametrize(("identity", "expected"), UPSTREAM_VECTORS)
def test_upstream_vectors(identity: ids.TaskIdentity, expected: str) -> None:
    assert ids.task_id(identity) == expected


def test_content_id_is_plain_sha256_and_wins_over_url() -> None:
    content = "my-content"
    expected = hashlib.sha256(content.encode()).hexdigest()
    both = ids.TaskIdentity(url="https://example.com/x", content_for_calculating_task_id=content)
    assert ids.task_id(both) == expected


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("https://Example.COM:443/", "https://example.com"),
        ("HTTP://example.com:80", "http://example.com"),
        ("http://example.com:8080/", "http://example.com:8080"),
        ("https://example.com/a/../b/./c", "https://example.com/b/c"),
        ("https://example.com/?a=b", "https://example.com/?a=b"),
        ("https://example.com/f?X-Amz-Signature=s&x=1&Expires=9", "https://example.com/f?x=1"),
        (
            "https://example.com/f?a=x y&b=1+1&c=%7E~*",
            "https://example.com/f?a=x+y&b=1+1&c=%7E%7E*",
        ),
        ("https://example.com/f?flag", "https://example.com/f?flag="),
        ("https://example.com/f?ns=k8s.io", "https://example.com/f"),
        ("https://example.com/path with space", "https://example.com/path%20with%20space"),
        ("https://bücher.de/x", "https://xn--bcher-kva.de/x"),
        ("https://example.com/f#frag", "https://example.com/f#frag"),
    ],
)
def test_normalize_examples(url: str, normalized: str) -> None:
    assert ids.normalize_url(url) == normalized


def test_user_filters_replace_the_default_list() -> None:
    url = "https://example.com/f?X-Amz-Signature=s&token=t"
    assert ids.normalize_url(url, ["token"]) == "https://example.com/f?X-Amz-Signature=s"


def test_filter_keys_are_case_sensitive() -> None:
    assert ids.normalize_url("https://e.com/f?ns=1&NS=2") == "https://e.com/f?NS=2"


@pytest.mark.parametrize("bad", ["", "not a url", "http://", "://x", "https://exa mple.com"])
def test_malformed_urls_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInput, match="malformed URL"):
        ids.normalize_url(bad)


def test_task_id_needs_url_or_content() -> None:
    with pytest.raises(InvalidInput):
        ids.task_id(ids.TaskIdentity())


def test_host_and_peer_ids() -> None:
    assert ids.host_id("127.0.0.1", "localhost") == "127.0.0.1-localhost"
    assert ids.host_id("127.0.0.1", "localhost", seed=True) == "127.0.0.1-localhost-seed"
    peer = ids.peer_id("10.0.0.1", "h1")
    assert re.fullmatch(r"10\.0\.0\.1-h1-[0-9a-f-]{36}", peer)
    assert ids.peer_id("10.0.0.1", "h1", seed=True).endswith("-seed")
    assert ids.peer_id("10.0.0.1", "h1") != ids.peer_id("10.0.0.1", "h1")


def test_check_task_id() -> None:
    assert ids.check_task_id("a" * 64) == "a" * 64
    for bad in ["A" * 64, "a" * 63, "g" * 64, ""]:
        with pytest.raises(InvalidInput):
            ids.check_task_id(bad)


# --- properties -------------------------------------------------------------------

hosts = st.from_regex(r"[a-z][a-z0-9]{0,10}(\.[a-z][a-z0-9]{0,8}){1,2}", fullmatch=True)
segments = st.lists(st.from_regex(r"[A-Za-z0-9_.~-]{1,8}", fullmatch=True), max_size=4)
keys = st.sampled_from(["a", "b", "token", "Expires", "X-Amz-Date", "ns", "k", "sig"])
values = st.text(max_size=12)
pairs = st.lists(st.tuples(keys, values), max_size=6)


def _path(parts: list[str]) -> str:
    return "/" + "/".join(p for p in parts if p not in (".", ".."))


@given(scheme=st.sampled_from(["http", "https"]), host=hosts, parts=segments)
def test_default_port_and_case_do_not_matter(scheme: str, host: str, parts: list[str]) -> None:
    port = {"http": 80, "https": 443}[scheme]
    path = _path(parts)
    plain = ids.normalize_url(f"{scheme}://{host}{path}")
    assert ids.normalize_url(f"{scheme}://{host}:{port}{path}") == plain
    assert ids.normalize_url(f"{scheme.upper()}://{host.upper()}{path}") == plain


@given(scheme=st.sampled_from(["http", "https", "ftp"]), host=hosts)
def test_empty_and_root_path_agree_without_trailing_slash(scheme: str, host: str) -> None:
    a = ids.normalize_url(f"{scheme}://{host}")
    assert a == ids.normalize_url(f"{scheme}://{host}/")
    assert not a.endswith("/")


@given(host=hosts, query=pairs, filters=st.sets(keys, max_size=4))
def test_filters_remove_pairs_and_keep_order(
    host: str, query: list[tuple[str, str]], filters: set[str]
) -> None:
    url = f"https://{host}/f?" + urlencode(query)
    normalized = ids.normalize_url(url, filters)
    kept = [(k, v) for k, v in query if k not in filters]
    if not kept:
        assert "?" not in normalized
        return
    _, _, q = normalized.partition("?")
    assert parse_qsl(q, keep_blank_values=True) == kept
    # form encoding: only these characters survive unescaped
    assert re.fullmatch(r"[A-Za-z0-9*\-._+%=&]*", q)


@given(host=hosts, query=pairs)
def test_normalization_is_idempotent(host: str, query: list[tuple[str, str]]) -> None:
    once = ids.normalize_url(f"https://{host}/p?" + urlencode(query))
    assert ids.normalize_url(once) == once


@given(tag=st.text(max_size=8), app=st.text(max_size=8))
def test_fields_feed_the_hash_without_separator(tag: str, app: str) -> None:
    expected = hashlib.sha256(("https://example.com" + tag + app + "STANDARD").encode()).hexdigest()
    assert (
        ids.task_id(ids.TaskIdentity(url="https://example.com", tag=tag, application=app))
        == expected
    )


# --- CLI ---------------------------------------------------------------------------


def test_cli_prints_only_the_id() -> None:
    result = run_damselfly("task-id", "https://example.com", "--tag", "foo", "--application", "bar")
    assert result.returncode == 0, result.stderr
    assert result.stdout == UPSTREAM_VECTORS[0][1] + "\n"


def test_cli_piece_length_units_and_filters() -> None:
    a = run_damselfly("task-id", "https://e.com/f", "--piece-length", "4MiB")
    b = run_damselfly("task-id", "https://e.com/f", "--piece-length", "4194304")
    c = run_damselfly("task-id", "https://e.com/f", "--piece-length", "4mib")
    assert a.stdout == b.stdout == c.stdout and len(a.stdout.strip()) == 64
    d = run_damselfly(
        "task-id",
        "https://example.com?foo=foo&bar=bar",
        "--filtered-query-param",
        "foo",
        "--filtered-query-param",
        "bar",
    )
    assert d.stdout.strip() == UPSTREAM_VECTORS[2][1]
    e = run_damselfly("task-id", "--content-for-calculating-task-id", "x")
    assert e.stdout.strip() == ids.content_task_id("x")


@pytest.mark.parametrize(
    "args",
    [["task-id"], ["task-id", "not a url"], ["task-id", "https://e.com", "--piece-length", "4XB"]],
)
def test_cli_bad_input_is_one_line_and_nonzero(args: list[str]) -> None:
    result = run_damselfly(*args)
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: ")
