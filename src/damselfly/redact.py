"""Credentials out of what we print: a URL's password and its signing query values
(pre-signed S3/GCS/OSS links, tokens) become ******. Everything else stays literal,
so a log line can still be found with the URL a user has (without its secrets)."""

from __future__ import annotations

import re

MASK = "******"
_URL = re.compile(r'[A-Za-z][A-Za-z0-9+.-]*://[^\s"<>]+')
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/@:]*):[^/@]*@")
_SECRET_WORDS = ("signature", "token", "password", "passwd", "secret", "credential")
_SECRET_NAMES = {"sig", "api_key", "apikey", "access_key", "accesskey"}


def _secret(name: str) -> bool:
    name = name.lower()
    return name in _SECRET_NAMES or any(word in name for word in _SECRET_WORDS)


def _one(url: str) -> str:
    url = _USERINFO.sub(rf"\1:{MASK}@", url)
    base, sep, query = url.partition("?")
    if not sep:
        return url
    query, hash_sep, fragment = query.partition("#")
    parts = []
    for part in query.split("&"):
        name, eq, _ = part.partition("=")
        parts.append(f"{name}={MASK}" if eq and _secret(name) else part)
    return base + "?" + "&".join(parts) + hash_sep + fragment


def redact(text: str) -> str:
    """`text` with every URL in it redacted."""
    if "://" not in text:
        return text
    return _URL.sub(lambda m: _one(m.group(0)), text)
