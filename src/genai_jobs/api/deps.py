"""What routes depend on: the services of this process and the caller's token."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Annotated
from uuid import UUID

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers

from genai_jobs.domain import DomainError, TokenRecord
from genai_jobs.handlers import Registry
from genai_jobs.settings import Settings
from genai_jobs.store import Store, public_location
from genai_jobs.tokens import hash_secret

log = logging.getLogger("genai_jobs.api")

# `last used` of a token is written at most this often (it costs a write).
TOKEN_TOUCH_INTERVAL_SECONDS = 60.0
# DataRobot's Python client sends `Token`; everyone else sends `Bearer`.
AUTH_SCHEMES = ("bearer", "token")


@dataclass
class Services:
    store: Store
    registry: Registry
    settings: Settings
    _touched: dict[UUID, float] = field(default_factory=dict)
    _background: set[asyncio.Task[None]] = field(default_factory=set)

    @cached_property
    def store_location(self) -> str:
        """Where this server's tokens are, told to a caller whose token it refused."""
        return public_location(self.settings.database_url)

    def note_token_use(self, token: TokenRecord) -> None:
        now = time.time()
        if now - self._touched.get(token.id, 0.0) < TOKEN_TOUCH_INTERVAL_SECONDS:
            return
        self._touched[token.id] = now
        task = asyncio.create_task(self._touch(token.id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _touch(self, token_id: UUID) -> None:
        try:
            await self.store.touch_token(token_id, datetime.now(UTC))
        except DomainError as exc:  # bookkeeping only: the request went through
            log.warning("could not record the use of token %s: %s", token_id, exc)


@dataclass(frozen=True, slots=True)
class Caller:
    token: TokenRecord

    @property
    def tenant_scope(self) -> str | None:
        """The tenant whose jobs this caller sees; None for an admin (all)."""
        return None if self.token.is_admin else self.token.tenant

    def describe(self) -> str:
        return f"by token {str(self.token.id)[:8]} (tenant {self.token.tenant})"


def get_services_now(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_services(request: Request) -> Services:
    # async: FastAPI would run a plain function in its thread pool, a hop per request.
    return get_services_now(request)


ServicesDep = Annotated[Services, Depends(get_services)]


# Clients whose refused token is answered with where the server keeps its tokens.
_LOCAL_CLIENTS = frozenset({"127.0.0.1", "::1"})


def refusal_of_token(request: Request, services: Services) -> str:
    """Why a token was refused. Said with the store to a client on this machine, since
    the usual cause is a token made in another store (a `token create` run where a
    relative SQLite path names another file); a remote client is told nothing of the
    server's files or hosts, nor is anyone behind a proxy (every client looks local)."""
    reason = "invalid or revoked token"
    client = request.client.host if request.client is not None else ""
    if client in _LOCAL_CLIENTS and not services.settings.behind_proxy:
        reason += f"; this server's tokens are in --database-url {services.store_location}"
    return reason


def _unauthorized(reason: str) -> HTTPException:
    return HTTPException(401, reason, headers={"WWW-Authenticate": "Bearer"})


def secret_of(authorization: str) -> str | None:
    """The token an Authorization header's value carries, or None if it carries none."""
    scheme, _, secret = authorization.strip().partition(" ")
    if scheme.lower() not in AUTH_SCHEMES or not secret.strip():
        return None
    return secret.strip()


def bearer_secret(headers: Headers) -> str:
    header = headers.get("authorization")
    if not header:
        raise _unauthorized("missing Authorization header: send 'Authorization: Bearer <token>'")
    secret = secret_of(header)
    if secret is None:
        raise _unauthorized("malformed Authorization header: expected 'Bearer <token>'")
    return secret


# Declares the seed's `BearerAuth` scheme in the OpenAPI document; the header itself
# is parsed by `bearer_secret`, which also accepts DataRobot's `Token` scheme.
_BEARER_AUTH = HTTPBearer(scheme_name="BearerAuth", auto_error=False,
                          description="`Bearer <token>`; `Token <token>` is accepted too.")
DeclaredBearer = Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER_AUTH)]


async def authenticate(request: Request, services: Services) -> Caller:
    """The caller behind the request's token; 401 without a live one."""
    token = await services.store.find_token(hash_secret(bearer_secret(request.headers)))
    if token is None:
        raise _unauthorized(refusal_of_token(request, services))
    services.note_token_use(token)
    return Caller(token)


async def get_caller(request: Request, services: ServicesDep, _: DeclaredBearer) -> Caller:
    return await authenticate(request, services)


CallerDep = Annotated[Caller, Depends(get_caller)]
