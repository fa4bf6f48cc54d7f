"""The `token` group: access tokens of a team server."""

from typing import Annotated

import typer

from modelkeep.cli import render
from modelkeep.cli.base import JsonOpt, MessageOpt, app, open_repo, state, token_app
from modelkeep.cli.render import emit_json, err, out


@token_app.command("create")
def token_create(
    user: Annotated[str, typer.Option("--user", help="Who the token acts for, e.g. alice.")],
    scope: Annotated[
        str,
        typer.Option(
            "--scope", help="read, write (includes read) or admin (includes write, tokens)."
        ),
    ],
    models: Annotated[
        str,
        typer.Option(
            "--model",
            help="Only models whose names match this pattern (* ? [set]), e.g. 'churn*'.",
        ),
    ] = "*",
    expires: Annotated[
        str | None,
        typer.Option("--expires", help="Lasts this long (e.g. 90d, 12h); default: until revoked."),
    ] = None,
    message: MessageOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Make a token and print it, once: only its hash is kept, so it cannot be shown again.

    The token alone goes to stdout (`... > token.txt`, then `chmod 600 token.txt`);
    what it allows, to stderr."""
    token, plaintext = open_repo().tokens.create(user, scope, models, expires, message)
    if as_json:
        emit_json({**token.to_dict(), "token": plaintext})
    else:
        out.print(plaintext, markup=False)
    err.print(
        f"token {token.id} for {token.user}: {render.token_reach(token)}. This is the only "
        "time it is shown (only its hash is kept): store it now, e.g. in a file of mode 600.",
        markup=False,
    )


@token_app.command("list")
def token_list(
    all_: Annotated[bool, typer.Option("--all", help="Revoked tokens too.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List tokens, oldest first (never their secrets: those are not stored)."""
    tokens = open_repo().tokens.list(include_revoked=all_)
    if as_json:
        emit_json([t.to_dict() for t in tokens])
    elif tokens:
        out.print(render.token_table(tokens))


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(metavar="ID", help="The token's id (token list).")],
    message: MessageOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Revoke a token for good: every request made with it is refused from now on."""
    token = open_repo().tokens.revoke(token_id, message)
    if as_json:
        emit_json(token.to_dict())
    else:
        out.print(f"revoked token {token.id} of {token.user} ({render.token_reach(token)})")


@app.command()
def server(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8900,
    db: Annotated[
        str | None,
        typer.Option(help="Serve the repository whose registry is this database URL."),
    ] = None,
    store: Annotated[
        str | None, typer.Option(help="…and whose objects are in this store (s3://… or a path).")
    ] = None,
    s3_endpoint: Annotated[
        str | None, typer.Option(help="An S3-compatible endpoint URL (MinIO, a test server).")
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1, max=64, help="Server processes (each opens the repository; default: one)."
        ),
    ] = 1,
) -> None:
    """Serve the repository over HTTP to a team: its API under /api/v1, described by
    /openapi.json. Every request but /api/v1/health needs a token (`modelkeep token
    create`; there is no default credential); every change is recorded with the token's
    user, id and the client's address. A token revoked is refused at once on a local
    repository; on PostgreSQL, by other server processes within 5 seconds."""
    from modelkeep.server.run import serve

    if db is None and store is None:
        serve(state["repo"], host=host, port=port, workers=workers)
    else:
        serve(
            None, host=host, port=port, workers=workers, db=db, store=store,
            s3_endpoint=s3_endpoint,
        )  # fmt: skip
