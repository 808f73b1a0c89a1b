"""Server settings: environment (CROSSMEDIA_*), an optional JSON/TOML file, validated at start-up.

Precedence, highest first: keyword arguments, environment variables, the settings file
(`CROSSMEDIA_SETTINGS_FILE` or the `settings_file` argument of `load_settings`), defaults.

API keys (`CROSSMEDIA_API_KEYS`) take either a compact list or JSON:

    CROSSMEDIA_API_KEYS="reader-key:read,admin-key:read+write"
    CROSSMEDIA_API_KEYS='{"reader-key": ["read"], "admin-key": ["read", "write"]}'

A key with only `write` may upload and delete but not search; give `read+write` for both.
With no keys the server is open, and therefore only allowed to bind a loopback address.
"""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal, cast

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

Scope = Literal["read", "write"]
SCOPES: tuple[Scope, ...] = ("read", "write")

_SETTINGS_FILE_ENV = "CROSSMEDIA_SETTINGS_FILE"


def parse_api_keys(value: Any) -> dict[str, frozenset[Scope]]:
    """`"k1:read,k2:read+write"`, a JSON object `{"k1": ["read"]}` or a dict -> {key: scopes}."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"API keys look like JSON but do not parse: {exc}") from exc
        else:
            pairs: dict[str, Any] = {}
            for entry in filter(None, (e.strip() for e in text.split(","))):
                key, sep, scope_text = entry.rpartition(":")
                if not sep:
                    raise ValueError(
                        "An API key entry has no scopes; write it as KEY:read or KEY:read+write."
                    )
                pairs[key.strip()] = [s.strip() for s in scope_text.split("+")]
            value = pairs
    if not isinstance(value, dict):
        raise ValueError("API keys must be 'KEY:SCOPES,...' or a JSON object {KEY: [SCOPES]}.")
    keys: dict[str, frozenset[Scope]] = {}
    for key, raw in value.items():
        scopes: list[str] = raw.split("+") if isinstance(raw, str) else list(raw)
        if not isinstance(key, str) or len(key) < 8:
            raise ValueError("Every API key must be a string of at least 8 characters.")
        bad = [s for s in scopes if s not in SCOPES]
        if bad or not scopes:
            raise ValueError(f"Unknown API key scope(s) {bad}; allowed: {list(SCOPES)}.")
        keys[key] = frozenset(cast(list[Scope], scopes))
    return keys


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CROSSMEDIA_", extra="forbid", frozen=True)

    # Catalogue and models
    data_dir: Path = Path("crossmedia-data")
    db_url: str | None = None
    # None: the model the catalogue was built with (the default model for a new catalogue).
    model: str | None = None
    reranker: str = Field(
        "auto",
        min_length=1,
        description='"auto": the re-ranker shipped for the model (if any); "none"; or a name.',
    )
    create_catalogue: bool = True
    media_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Folders (os.pathsep-separated) whose files /v1/items/{id}/media may serve, "
        "besides the data directory and the folders ingestion recorded.",
    )
    write_lock_timeout_s: float = Field(
        5.0,
        ge=0,
        description="How long an upload or delete waits for another process (e.g. `crossmedia "
        "index`) to release the catalogue's write lock before answering 503 + Retry-After.",
    )
    torch_threads: int | None = Field(
        1,
        ge=1,
        description="Intra-op threads per request, set by `serve` for the whole process. "
        "Requests already run in parallel on worker threads; more intra-op threads per request "
        "mostly spin and steal cores from the event loop. None keeps torch's default.",
    )

    # Network
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    api_keys: Annotated[dict[str, frozenset[Scope]], NoDecode] = Field(
        default_factory=dict, repr=False
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Limits: each answered with a JSON error before any heavy work.
    max_body_bytes: int = Field(25 * 1024 * 1024, gt=0)
    max_k: int = Field(100, ge=1)
    max_image_bytes: int = Field(20 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(40_000_000, gt=0)
    max_audio_bytes: int = Field(20 * 1024 * 1024, gt=0)
    max_audio_seconds: float = Field(60.0, gt=0)
    max_text_chars: int = Field(2000, gt=0)
    max_captions: int = Field(20, ge=0)
    request_timeout_s: float = Field(30.0, gt=0)
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="A connection whose request headers are not complete in this "
        "time is closed (slow-header clients).",
    )
    keep_alive_s: float = Field(5.0, gt=0, description="Idle keep-alive connections close after.")
    rate_limit_per_minute: float = Field(600.0, ge=0, description="0 disables rate limiting")
    rate_limit_burst: int = Field(60, ge=1)
    thumb_sizes: tuple[int, int] = (16, 1024)

    @field_validator("media_roots", mode="before")
    @classmethod
    def _parse_roots(cls, value: Any) -> list[Path]:
        if isinstance(value, str):
            return [Path(p) for p in value.split(os.pathsep) if p.strip()]
        return [Path(p) for p in value or []]

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_keys(cls, value: Any) -> dict[str, frozenset[Scope]]:
        return parse_api_keys(value)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: Any) -> list[str]:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return list(json.loads(text))
            return [o.strip() for o in text.split(",") if o.strip()]
        return list(value or [])

    @model_validator(mode="after")
    def _open_server_only_on_loopback(self) -> Settings:
        if not self.api_keys and not is_loopback(self.host):
            raise ValueError(
                f"Refusing to serve on {self.host!r} without API keys: anyone on the network could "
                "read and change the catalogue. Set CROSSMEDIA_API_KEYS (e.g. "
                "'KEY:read,ADMIN_KEY:read+write') or bind to 127.0.0.1."
            )
        if "*" in self.cors_origins and self.api_keys:
            raise ValueError("CORS origin '*' cannot be combined with API keys; list the origins.")
        return self

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = os.environ.get(_SETTINGS_FILE_ENV)
        if path:
            sources.append(_file_source(settings_cls, Path(path)))
        return tuple(sources)


def _file_source(settings_cls: type[BaseSettings], path: Path) -> PydanticBaseSettingsSource:
    if not path.is_file():
        raise FileNotFoundError(f"Settings file {path} does not exist (from {_SETTINGS_FILE_ENV}).")
    if path.suffix == ".toml":
        return TomlConfigSettingsSource(settings_cls, toml_file=path)
    if path.suffix == ".json":
        return JsonConfigSettingsSource(settings_cls, json_file=path)
    raise ValueError(f"Settings file {path} must end in .json or .toml.")


def load_settings(settings_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build and validate settings; a `settings_file` argument wins over the environment's."""
    if settings_file is None:
        return Settings(**overrides)
    previous = os.environ.get(_SETTINGS_FILE_ENV)
    os.environ[_SETTINGS_FILE_ENV] = str(settings_file)
    try:
        return Settings(**overrides)
    finally:
        if previous is None:
            os.environ.pop(_SETTINGS_FILE_ENV, None)
        else:
            os.environ[_SETTINGS_FILE_ENV] = previous
