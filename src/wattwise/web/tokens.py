"""API tokens: created once (the secret is shown a single time), stored as SHA-256 hashes.

A token is ``ww_`` followed by 43 URL-safe characters (256 random bits). Because tokens are random and
long, a plain SHA-256 is a sound one-way store (no salting or slow hashing is needed, unlike passwords).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from wattwise.errors import WattwiseError
from wattwise.store import Store
from wattwise.store.models import utcnow
from wattwise.web.models import ApiToken

SCOPES = ("read", "write")
TOKEN_PREFIX = "ww_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    prefix: str
    scope: str
    created_at: datetime | None
    last_used_at: datetime | None
    revoked: bool


def _info(row: ApiToken) -> TokenInfo:
    return TokenInfo(
        row.id, row.name, row.prefix, row.scope, row.created_at, row.last_used_at, row.revoked_at is not None
    )


def create_token(store: Store, name: str, scope: str = "write") -> str:
    """Store a new token's hash under `name` and return the secret (the only time it is known)."""
    if scope not in SCOPES:
        raise WattwiseError(f"token scope {scope!r} is not one of {', '.join(SCOPES)}")
    if not name or len(name) > 200:
        raise WattwiseError("a token needs a name of 1 to 200 characters")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    try:
        with store.session() as session:
            old = session.scalar(select(ApiToken).where(ApiToken.name == name))
            if old is not None and old.revoked_at is not None:  # a revoked name may be reused
                session.delete(old)
                session.flush()
            session.add(ApiToken(name=name, token_hash=hash_token(secret), prefix=secret[:10], scope=scope))
    except IntegrityError as exc:
        raise WattwiseError(f"a token named {name!r} exists already (revoke it first or pick another name)") from exc
    return secret


def list_tokens(store: Store) -> list[TokenInfo]:
    with store.session() as session:
        return [_info(row) for row in session.scalars(select(ApiToken).order_by(ApiToken.id))]


def revoke_token(store: Store, name: str) -> None:
    with store.session() as session:
        row = session.scalar(select(ApiToken).where(ApiToken.name == name))
        if row is None:
            raise WattwiseError(f"no token named {name!r}")
        if row.revoked_at is None:
            row.revoked_at = utcnow()


def check_token(store: Store, secret: str) -> TokenInfo | None:
    """The token's info when `secret` is a live token, else None. Records the time of use."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    digest = hash_token(secret)
    with store.session() as session:
        row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
        if row is None or row.revoked_at is not None:
            return None
        # constant-time confirmation of the match (the lookup itself is by index)
        if not secrets.compare_digest(row.token_hash, digest):
            return None
        row.last_used_at = utcnow()
        return _info(row)
