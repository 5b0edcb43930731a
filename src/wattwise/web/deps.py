"""FastAPI dependencies shared by every router of the app (also the cluster's).

- `get_store(request)`: the `Store` the app was created with (`app.state.store`).
- `require_write`: the request must carry `Authorization: Bearer <token>` for a live token of scope
  "write"; 401 without a valid token, 403 for a read-only token or an app started read-only.
- `require_read`: open unless the app was created with `read_requires_token=True`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from wattwise.store import Store
from wattwise.web.tokens import TokenInfo, check_token, create_token, hash_token

__all__ = ["StoreDep", "create_token", "get_store", "hash_token", "require_read", "require_write"]

_bearer = HTTPBearer(auto_error=False, description="An API token made with `wattwise tokens create NAME`.")


def get_store(request: Request) -> Store:
    return request.app.state.store


StoreDep = Annotated[Store, Depends(get_store)]


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"})


def _token(request: Request, credentials: HTTPAuthorizationCredentials | None) -> TokenInfo | None:
    if credentials is None:
        return None
    if credentials.scheme.lower() != "bearer":
        raise _unauthorized("use 'Authorization: Bearer <token>'")
    info = check_token(get_store(request), credentials.credentials)
    if info is None:
        raise _unauthorized("unknown or revoked token")
    return info


def require_write(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
) -> TokenInfo:
    info = _token(request, credentials)
    if info is None:
        raise _unauthorized("this request changes data: send 'Authorization: Bearer <token>'")
    if getattr(request.app.state, "read_only", False):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this server was started read-only")
    if info.scope != "write":
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"token {info.name!r} may only read")
    return info


def require_read(request: Request) -> TokenInfo | None:
    # reads the header itself rather than through the HTTPBearer scheme, so that the OpenAPI spec does not
    # mark open (read) routes as needing a token
    header = request.headers.get("authorization")
    credentials = None
    if header:
        scheme, _, token = header.partition(" ")
        credentials = HTTPAuthorizationCredentials(scheme=scheme, credentials=token.strip())
    info = _token(request, credentials)
    if info is None and getattr(request.app.state, "read_requires_token", False):
        raise _unauthorized("this server requires a token to read: send 'Authorization: Bearer <token>'")
    return info
