"""``pipectl server``: the HTTP API over a store (see :mod:`pipectl.server`).

FastAPI and uvicorn are imported only when the command runs.
"""

from __future__ import annotations

import logging

import click

from ..errors import InvalidArgument


@click.command("server")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="PIPECTL_SERVER_HOST",
              help="Address to listen on; one that is not loopback needs --tokens [env PIPECTL_SERVER_HOST].")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True,
              envvar="PIPECTL_SERVER_PORT", help="Port to listen on [env PIPECTL_SERVER_PORT].")
@click.option("--tokens", "tokens_file", type=click.Path(dir_okay=False), envvar="PIPECTL_SERVER_TOKENS",
              help="File of bearer tokens, one '<read|write> <token>' per line [env PIPECTL_SERVER_TOKENS].")
@click.option("--model-server", metavar="URL", envvar="PIPECTL_MODEL_SERVER",
              help="A model server (pipectl serve) whose served model the console shows and lets you try "
                   "[env PIPECTL_MODEL_SERVER].")
@click.option("--access-log", is_flag=True, help="Log every request.")
@click.pass_obj
def server(obj, host, port, tokens_file, model_server, access_log):
    """Serve the store's repos, pipelines and jobs as a JSON API over HTTP.

    Clients then need a token, not the store's credentials. The API lives
    under /api/v1; its OpenAPI document is /openapi.json. Without --tokens
    the API is open, which is allowed on a loopback address only. Stop with
    Ctrl-C or SIGTERM.
    """
    from ..server.auth import is_loopback, load_tokens
    tokens = load_tokens(tokens_file) if tokens_file else {}
    if not tokens and not is_loopback(host):
        raise InvalidArgument(f"refusing to serve on {host} with no tokens: give --tokens FILE "
                              "(or listen on 127.0.0.1)")
    import uvicorn

    from ..server.api import create_app
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if model_server and not model_server.startswith(("http://", "https://")):
        raise InvalidArgument(f"--model-server {model_server!r}: expected an http:// or https:// URL")
    app = create_app(obj.client, tokens, model_server)
    click.echo(f"pipectl server: http://{host}:{port}/api/v1 ({'tokens required' if tokens else 'open'}); "
               f"OpenAPI at /openapi.json", err=True)
    # Watch streams never end by themselves: a stop waits 5 s for requests in flight, then closes them.
    uvicorn.run(app, host=host, port=port, access_log=access_log, log_level="warning", timeout_graceful_shutdown=5)


COMMANDS = [server]
"""The commands this module adds to the CLI, in help order."""
