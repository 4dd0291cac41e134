"""``pipectl server``: the HTTP API over a store (see :mod:`pipectl.server`).

FastAPI and uvicorn are imported only when the command runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

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
@click.option("--s3-gateway-port", type=click.IntRange(1, 65535), envvar="PIPECTL_S3_GATEWAY_PORT",
              help="Also serve the S3 gateway (branches and commits as S3 buckets, Pachyderm's) on this port "
                   "of the same host, with the same tokens; off unless given [env PIPECTL_S3_GATEWAY_PORT].")
@click.option("--access-log", is_flag=True, help="Log every request.")
@click.pass_obj
def server(obj, host, port, tokens_file, model_server, s3_gateway_port, access_log):
    """Serve the store's repos, pipelines and jobs as a JSON API over HTTP.

    Clients then need a token, not the store's credentials. The API lives
    under /api/v1; its OpenAPI document is /openapi.json. Without --tokens
    the API is open, which is allowed on a loopback address only. With
    --s3-gateway-port, S3 clients reach the same data at http://HOST:PORT
    (bucket master.REPO; a token is both access key id and secret key).
    Stop with Ctrl-C or SIGTERM.
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
    if s3_gateway_port == port:
        raise InvalidArgument(f"--s3-gateway-port {s3_gateway_port}: the API already listens on that port")
    sockets = [_listen(host, port), _listen(host, s3_gateway_port)] if s3_gateway_port else []
    app = create_app(obj.client, tokens, model_server)
    click.echo(f"pipectl server: http://{host}:{port}/api/v1 ({'tokens required' if tokens else 'open'}); "
               f"OpenAPI at /openapi.json", err=True)
    # Watch streams never end by themselves: a stop waits 5 s for requests in flight, then closes them.
    options = dict(host=host, access_log=access_log, log_level="warning", timeout_graceful_shutdown=5)
    if s3_gateway_port is None:
        uvicorn.run(app, port=port, **options)
        return
    from ..server.s3 import create_s3_app
    gateway = create_s3_app(obj.client, tokens)
    click.echo(f"pipectl S3 gateway: http://{host}:{s3_gateway_port} (buckets branch.repo; "
               f"{'a token is the access key id and the secret key' if tokens else 'open'})", err=True)
    configs = [uvicorn.Config(app, port=port, **options), uvicorn.Config(gateway, port=s3_gateway_port, **options)]
    servers = [uvicorn.Server(config) for config in configs]
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=configs[0].get_loop_factory()) as runner:
        runner.run(_serve_together(servers, sockets))  # uvloop when installed, as uvicorn.run picks


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``. Raises InvalidArgument (one line) if it cannot be had."""
    try:
        return socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as e:
        reason = (e.strerror or str(e)).split(" (while attempting")[0]
        raise InvalidArgument(f"cannot listen on {host} port {port}: {reason}") from None


async def _serve_together(servers: list, sockets: list[socket.socket]) -> None:
    """Run uvicorn servers (each on its socket) on one event loop until one
    stops, then stop the others. A signal reaches the server whose handler
    was installed last; uvicorn raises it again as that server ends, which
    stops the one before it."""
    tasks = [asyncio.ensure_future(s.serve(sockets=[sock])) for s, sock in zip(servers, sockets)]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for s in servers:
        s.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)


COMMANDS = [server]
"""The commands this module adds to the CLI, in help order."""
