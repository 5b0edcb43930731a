"""`wattwise serve` (API + dashboard) and `wattwise tokens create|list|revoke`."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from wattwise.clitools import DbOption, JsonOption, console
from wattwise.store import open_store

tokens_app = typer.Typer(help="Manage API tokens for write access to `wattwise serve`.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.add_typer(tokens_app, name="tokens")


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    read_only: Annotated[bool, typer.Option("--read-only", help="Refuse every write request.")] = False,
    read_requires_token: Annotated[bool, typer.Option("--private", help="Require a token for reading too.")] = False,
    trusted_proxy: Annotated[
        list[str] | None,
        typer.Option(
            "--trusted-proxy",
            metavar="ADDR",
            help="A reverse proxy (IP address or network) whose X-Forwarded-For/-Proto are believed; repeatable. "
            "Without it the client address is the socket's peer, whatever the headers say.",
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Serve the JSON API (/api, OpenAPI at /docs) and the dashboard (/).

    Reading is open; writing needs `Authorization: Bearer <token>` (see `wattwise tokens create`).
    Forwarded headers are ignored unless they come from a --trusted-proxy.

    Examples:
      wattwise serve --port 8000 --db runs.db
      wattwise serve --host 0.0.0.0 --trusted-proxy 10.0.0.5 --private   # behind nginx on 10.0.0.5
    """
    import uvicorn

    from wattwise.web.app import create_app
    from wattwise.web.serving import proxy_settings

    proxies = proxy_settings(trusted_proxy or [])
    app = create_app(
        store=open_store(db), read_only=read_only, read_requires_token=read_requires_token, warm_caches=True
    )
    trust = ", ".join(trusted_proxy or []) or "none (client address from the socket)"
    console.print(f"wattwise dashboard on http://{host}:{port}/  (API docs: /docs; trusted proxies: {trust})")
    uvicorn.run(app, host=host, port=port, log_level="info", **proxies)


@tokens_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="A name to recognise the token by, e.g. 'ci-runner'.")],
    scope: Annotated[str, typer.Option(help="read or write.")] = "write",
    db: DbOption = None,
) -> None:
    """Create a token and print it once (only its hash is stored).

    Example: wattwise tokens create ci-runner
    """
    from wattwise.web.tokens import create_token

    secret = create_token(open_store(db), name, scope)
    console.print(f"token {name!r} ({scope}); copy it now, it is not shown again:", highlight=False)
    print(secret)


@tokens_app.command("list")
def list_(as_json: JsonOption = False, db: DbOption = None) -> None:
    """List tokens (name, scope, first characters, last use); secrets are never shown."""
    from wattwise.web.tokens import list_tokens

    rows: list[dict[str, Any]] = [
        {
            "name": t.name,
            "scope": t.scope,
            "prefix": t.prefix,
            "created_at": t.created_at.isoformat() if t.created_at else None,
            "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
            "revoked": t.revoked,
        }
        for t in list_tokens(open_store(db))
    ]
    if as_json:
        print(json.dumps(rows))
        return
    from rich.table import Table

    table = Table("name", "scope", "prefix", "created", "last used", "revoked")
    for r in rows:
        table.add_row(
            r["name"],
            r["scope"],
            r["prefix"] + "…",
            r["created_at"] or "",
            r["last_used_at"] or "-",
            "yes" if r["revoked"] else "",
        )
    console.print(table)


@tokens_app.command("revoke")
def revoke(name: Annotated[str, typer.Argument(help="The token's name.")], db: DbOption = None) -> None:
    """Revoke a token: requests with it are refused from now on."""
    from wattwise.web.tokens import revoke_token

    revoke_token(open_store(db), name)
    console.print(f"token {name!r} revoked", highlight=False)
