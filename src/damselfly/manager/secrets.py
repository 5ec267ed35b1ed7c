"""Credentials in job args, sealed before the row is written.

Values that grant access (origin headers, passwords) are encrypted with a key kept
beside the database (`<data-dir>/manager/secret.key`, 0600) and shown as `******` by
the API. Only the worker that runs the job opens them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from damselfly.errors import DamselflyError
from damselfly.redact import redact

MASK = "******"
_SEALED = "$sealed"
_SECRET_KEYS = ("password",)
_SECRET_MAPS = ("headers",)


def _is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {_SEALED}


def default_key_file(data_dir: Path) -> Path:
    return data_dir / "manager" / "secret.key"


class SecretBox:
    def __init__(self, key_file: Path, *, create: bool = True) -> None:
        """`create`: make a key when there is none (the manager); a worker must be given
        the manager's, or it could not open what the manager sealed."""
        if not key_file.exists() and not create:
            raise DamselflyError(
                f"no secret key at {key_file}: copy the manager's "
                "<data-dir>/manager/secret.key there (mode 0600), or pass --secret-key-file"
            )
        if not key_file.exists():
            key_file.parent.mkdir(parents=True, exist_ok=True)
            temp = key_file.with_suffix(".tmp")
            temp.write_bytes(Fernet.generate_key())
            temp.chmod(0o600)
            temp.replace(key_file)
        self._fernet = Fernet(key_file.read_bytes().strip())

    def _seal(self, value: str) -> dict[str, str]:
        return {_SEALED: self._fernet.encrypt(value.encode()).decode()}

    def _open(self, value: Any) -> Any:
        if not _is_sealed(value):
            return value
        try:
            return self._fernet.decrypt(value[_SEALED].encode()).decode()
        except InvalidToken:
            raise DamselflyError(
                "a sealed credential in this job cannot be opened (the manager's secret.key "
                "changed); create the job again"
            ) from None

    def seal(self, args: dict[str, Any]) -> dict[str, Any]:
        sealed = dict(args)
        for key in _SECRET_KEYS:
            if isinstance(sealed.get(key), str) and sealed[key]:
                sealed[key] = self._seal(sealed[key])
        for key in _SECRET_MAPS:
            if isinstance(sealed.get(key), dict):
                sealed[key] = {k: self._seal(str(v)) for k, v in sealed[key].items()}
        return sealed

    def open(self, args: dict[str, Any]) -> dict[str, Any]:
        opened = {k: self._open(v) for k, v in args.items()}
        for key in _SECRET_MAPS:
            if isinstance(opened.get(key), dict):
                opened[key] = {k: self._open(v) for k, v in opened[key].items()}
        return opened


def masked(args: dict[str, Any]) -> dict[str, Any]:
    """What the API shows: every sealed value as ******."""
    shown = {k: MASK if _is_sealed(v) else v for k, v in args.items()}
    for key in ("url", "image_manifest_url"):
        if isinstance(shown.get(key), str):
            shown[key] = redact(shown[key])
    if isinstance(shown.get("urls"), list):
        shown["urls"] = [redact(u) if isinstance(u, str) else u for u in shown["urls"]]
    for key in _SECRET_MAPS:
        if isinstance(shown.get(key), dict):
            shown[key] = {k: MASK if _is_sealed(v) else v for k, v in shown[key].items()}
    return shown
