"""The ``auth`` block of a ``rest_api`` destination: which authentication, checked offline.

An attrs model structured by floe-sink's one converter; :mod:`floe_sink_dlt.saas.auth` builds
the ``httpx.Auth`` from it. Nothing here imports httpx, so ``floe-sink validate`` checks the
block (and that the destination's secret has the keys it reads) without loading it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, Final

import attrs

from floe_sink.errors import SinkConfigurationError
from floe_sink.secrets import reveal
from floe_sink.structuring import ConfigValueError, register_checked_class, register_enum
from floe_sink_dlt.structure import check_http_url, check_non_empty, structure_at

__all__ = ["AUTH_TYPES", "AuthConfig", "AuthType", "ClientAuth"]


class AuthType(enum.StrEnum):
    """The values of ``auth.type``."""

    BEARER = "bearer"
    API_KEY = "api_key"
    BASIC = "basic"
    OAUTH2_CLIENT_CREDENTIALS = "oauth2_client_credentials"


class ClientAuth(enum.StrEnum):
    """How OAuth2 client credentials are sent to the token endpoint."""

    BASIC = "basic"
    POST = "post"


register_enum(AuthType)
register_enum(ClientAuth)

AUTH_TYPES: Final = tuple(kind.value for kind in AuthType)
"""The values of ``auth.type``."""

_OPTIONS: Final = {
    AuthType.BEARER: (),
    AuthType.API_KEY: ("header", "prefix"),
    AuthType.BASIC: (),
    AuthType.OAUTH2_CLIENT_CREDENTIALS: ("token_url", "scope", "audience", "client_auth"),
}
SECRET_KEYS: Final = {
    AuthType.BEARER: ("token",),
    AuthType.API_KEY: ("api_key",),
    AuthType.BASIC: ("username", "password"),
    AuthType.OAUTH2_CLIENT_CREDENTIALS: ("client_id", "client_secret"),
}
"""The keys of the destination's secret each type reads."""

_HEADERS_OF_THEIR_OWN: Final = ("content-type", "idempotency-key", "content-length")


def _type_rules(given: Mapping[str, Any]) -> list[ConfigValueError]:
    kind = given["type"]
    options = _OPTIONS[kind]
    problems = [
        ConfigValueError(
            f"does not apply to type {kind}"
            + (f" (its options: {', '.join(options)})" if options else " (it has no options)"),
            at=(key,),
        )
        for key in given
        if key != "type" and key not in options
    ]
    if kind == AuthType.OAUTH2_CLIENT_CREDENTIALS and given.get("token_url") is None:
        problems.append(
            ConfigValueError(
                "is required for oauth2_client_credentials: an http:// or https:// URL",
                at=("token_url",),
            )
        )
    header = given.get("header")
    if header is not None and header.lower() in _HEADERS_OF_THEIR_OWN:
        problems.append(ConfigValueError(f"{header!r} cannot carry the API key", at=("header",)))
    return problems


@attrs.frozen(kw_only=True)
class AuthConfig:
    """The kind of authentication; its values come from the destination's secret.

    Attributes:
        type: ``bearer`` (secret key ``token``), ``api_key`` (``api_key``), ``basic``
            (``username``, ``password``) or ``oauth2_client_credentials`` (``client_id``,
            ``client_secret``).
        header: api_key: the header that carries the key (default ``X-Api-Key``).
        prefix: api_key: text before the key in the header (``"Token "``).
        token_url: oauth2_client_credentials: the token endpoint.
        scope: oauth2_client_credentials: the ``scope`` parameter, if the API wants one.
        audience: oauth2_client_credentials: the ``audience`` parameter, if the API wants one.
        client_auth: oauth2_client_credentials: ``basic`` (default) sends the client id and
            secret as HTTP Basic, ``post`` as form fields.
    """

    type: AuthType
    header: str | None = attrs.field(default=None, validator=check_non_empty)
    prefix: str | None = None
    token_url: str | None = attrs.field(default=None, validator=check_http_url)
    scope: str | None = None
    audience: str | None = None
    client_auth: ClientAuth | None = None

    @classmethod
    def parse(cls, spec: Any, *, where: str = "config.auth") -> AuthConfig:
        """Validate an ``auth`` block.

        Raises:
            SinkConfigurationError: Listing every key that is unknown, missing or invalid.
        """
        return structure_at(spec, cls, where=where)

    @property
    def secret_keys(self) -> tuple[str, ...]:
        """The keys of the destination's secret this authentication reads."""
        return SECRET_KEYS[self.type]

    def check_secret(self, secret: Mapping[str, Any], *, where: str = "config.auth") -> None:
        """Refuse a secret without the keys this type reads (naming keys, never values).

        Raises:
            SinkConfigurationError: A key is missing or empty.
        """
        missing = [key for key in self.secret_keys if not reveal(secret.get(key))]
        if missing:
            raise SinkConfigurationError(
                f"{where}: type {self.type} needs the key(s) {', '.join(map(repr, missing))} "
                "in the destination's secret (connection_secret_ref)"
            )


register_checked_class(AuthConfig, cross_check=_type_rules)
