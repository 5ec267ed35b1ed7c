"""Configuration files: one TOML file, a table per service ([peer], [scheduler],
[manager], [media]), whose keys are the settings fields (settings.py).

A flag given on the command line beats the file; the file beats the defaults.
`reference()` renders the keys as Markdown, so docs/configuration.md is generated
from the settings model and a test keeps the two equal.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import MISSING
from pathlib import Path
from typing import Any, Protocol, TypeVar

from damselfly.errors import InvalidInput
from damselfly.settings import ManagerSettings, MediaSettings, PeerSettings, SchedulerSettings
from damselfly.units import parse_duration, parse_size

SECTIONS: dict[str, type] = {
    "peer": PeerSettings,
    "scheduler": SchedulerSettings,
    "manager": ManagerSettings,
    "media": MediaSettings,
}
S = TypeVar("S")


class CommandLine(Protocol):
    """What `apply` needs of a CLI context: where each parameter's value came from."""

    def get_parameter_source(self, name: str) -> Any: ...


@dataclasses.dataclass(frozen=True, slots=True)
class ConfigFile:
    path: Path | None
    tables: Mapping[str, Mapping[str, Any]]

    def values(self, section: str) -> dict[str, Any]:
        """The section's settings, converted to the fields' types."""
        settings_type = SECTIONS[section]
        hints = typing.get_type_hints(settings_type)
        known = {f.name: f for f in dataclasses.fields(settings_type)}
        out: dict[str, Any] = {}
        for key, raw in self.tables.get(section, {}).items():
            if key not in known:
                raise InvalidInput(
                    f"config {self.path}: [{section}] has no setting {key!r}; known: "
                    + ", ".join(known)
                )
            out[key] = self._convert(section, key, raw, hints[key], known[key].metadata)
        return out

    def get(self, section: str, key: str) -> Any:
        return self.values(section).get(key)

    def apply(
        self,
        ctx: CommandLine,
        settings: S,
        section: str,
        flags: Mapping[str, str] | None = None,
    ) -> S:
        """`settings` with the file's values, except where a flag was given.

        `flags` names the command-line parameter of a field when it differs."""
        values = self.values(section)
        given = {name for name in values if _from_command_line(ctx, (flags or {}).get(name, name))}
        chosen = {k: v for k, v in values.items() if k not in given}
        return dataclasses.replace(settings, **chosen) if chosen else settings  # type: ignore[type-var]

    def _convert(self, section: str, key: str, raw: Any, hint: Any, meta: Mapping) -> Any:
        where = f"config {self.path}: [{section}] {key}"
        kinds = {a for a in typing.get_args(hint) if a is not type(None)} or {hint}
        if raw == "" and type(None) in typing.get_args(hint):
            return None
        unit = meta.get("unit")
        try:
            if typing.get_origin(hint) is tuple:
                item_type = typing.get_args(hint)[0]
                if not isinstance(raw, list):
                    raise InvalidInput(f"{where} must be a list")
                if item_type is str:
                    if not all(isinstance(item, str) for item in raw):
                        raise InvalidInput(f"{where} must be a list of strings")
                    return tuple(raw)
                return tuple(self._path(item, where) for item in raw)
            if Path in kinds:
                return self._path(raw, where)
            if bool in kinds:
                if not isinstance(raw, bool):
                    raise InvalidInput(f"{where} must be true or false")
                return raw
            if float in kinds:
                if isinstance(raw, str) and unit == "duration":
                    return parse_duration(raw)
                if isinstance(raw, int | float) and not isinstance(raw, bool):
                    return float(raw)
                raise InvalidInput(f"{where} must be a number of seconds or e.g. '30s', '5m'")
            if int in kinds:
                if isinstance(raw, str) and unit == "size":
                    return parse_size(raw)
                if isinstance(raw, int) and not isinstance(raw, bool):
                    return raw
                raise InvalidInput(f"{where} must be a whole number")
            if str in kinds:
                if not isinstance(raw, str):
                    raise InvalidInput(f"{where} must be a string")
                return raw
        except InvalidInput as exc:
            if str(exc).startswith(where):
                raise
            raise InvalidInput(f"{where}: {exc}") from None
        raise InvalidInput(f"{where}: unsupported setting type {hint}")

    def _path(self, raw: Any, where: str) -> Path:
        if not isinstance(raw, str) or not raw:
            raise InvalidInput(f"{where} must be a path")
        path = Path(raw).expanduser()
        # relative paths are read from the file's own directory, not the service's cwd
        if not path.is_absolute() and self.path is not None:
            path = self.path.parent / path
        return path


def _from_command_line(ctx: CommandLine, param: str) -> bool:
    source = ctx.get_parameter_source(param)
    # by name: Typer may carry its own copy of click's enum
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def load(path: Path | None) -> ConfigFile:
    """The file at `path` (None: an empty configuration), checked key by key."""
    if path is None:
        return ConfigFile(None, {})
    try:
        tables = tomllib.loads(path.read_text())
    except OSError as exc:
        raise InvalidInput(f"cannot read config {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"config {path} is not valid TOML: {exc}") from None
    unknown = [name for name in tables if name not in SECTIONS]
    if unknown:
        raise InvalidInput(
            f"config {path}: unknown table [{unknown[0]}]; tables are "
            + ", ".join(f"[{s}]" for s in SECTIONS)
        )
    bad = [name for name, table in tables.items() if not isinstance(table, dict)]
    if bad:
        raise InvalidInput(f"config {path}: {bad[0]} must be a table, [{bad[0]}]")
    config = ConfigFile(path, tables)
    for section in tables:
        config.values(section)  # every key is checked now, not when first used
    return config


def check(path: Path) -> list[str]:
    """Load every table into its settings, as the services would: one line per table."""
    config = load(path)
    lines = []
    for section, settings_type in SECTIONS.items():
        if section not in config.tables:
            continue
        values = config.values(section)
        values.setdefault("data_dir", Path("/var/lib/damselfly"))
        try:
            settings_type(**values)  # runs the settings' own checks
        except InvalidInput as exc:
            raise InvalidInput(f"config {path}: {exc}") from None
        lines.append(f"[{section}] {len(config.tables[section])} setting(s) ok")
    return lines


def reference() -> str:
    """Markdown: every table and key with its type, default and meaning."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- generated by `damselfly config reference`; tests/test_config.py keeps it so -->",
        "",
        "Every service reads one TOML file given with `--config FILE` (or the",
        "`DAMSELFLY_CONFIG` environment variable). Each service reads its own table:",
        "`damselfly peer` reads `[peer]`, `damselfly scheduler` `[scheduler]`,",
        "`damselfly manager` `[manager]` and `[media]`, `damselfly worker` `[media]` and",
        "the database, queue and key of `[manager]`, `damselfly serve` all four.",
        "A flag given on the command line wins over the file; the file wins over the",
        "defaults. Relative paths are read from the file's directory. Durations take a",
        "number of seconds or a string such as `'500ms'`, `'30s'`, `'5m'`, `'30d'`;",
        "sizes a number of bytes or a string such as `'100MiB'`. Check a file with",
        "`damselfly config check FILE`.",
    ]
    for section, settings_type in SECTIONS.items():
        hints = typing.get_type_hints(settings_type)
        lines += ["", f"## [{section}]", "", (settings_type.__doc__ or "").strip(), ""]
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for f in dataclasses.fields(settings_type):
            lines.append(
                f"| `{f.name}` | {_type_name(hints[f.name], f.metadata)} | {_default(f)} "
                f"| {f.metadata.get('help', '').replace('<', '&lt;')} |"
            )
    return "\n".join(lines) + "\n"


def _type_name(hint: Any, meta: Mapping) -> str:
    unit = meta.get("unit")
    if unit:
        return unit
    if typing.get_origin(hint) is tuple:
        return "list of strings" if typing.get_args(hint)[0] is str else "list of paths"
    kinds = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    names = {Path: "path", str: "string", int: "integer", float: "number", bool: "boolean"}
    return names.get(kinds[0], str(kinds[0]))


def _default(f: dataclasses.Field) -> str:
    if f.default_factory is not MISSING:
        return {"default_hostname": "this host's name", "default_ip": "this host's IP",
                "default_media_workers": "half the cores"}.get(
            f.default_factory.__name__, f.default_factory.__name__
        )  # fmt: skip
    if f.name == "data_dir":
        return "$DAMSELFLY_DATA_DIR, else ~/.local/share/damselfly"
    if f.default is MISSING:
        return "required"
    if isinstance(f.default, bool):
        return f"`{str(f.default).lower()}`"
    if f.default is None:
        return "none"
    if f.default == ():
        return "[]"
    return f"`{f.default!r}`".replace("'", '"')
