"""``pipectl serve``: the model server (see :mod:`pipectl.serving`).

The serving code (and Starlette, uvicorn, the handler's numpy/MXNet) is
imported only when the command runs, so the rest of the CLI needs none of it.
"""

from __future__ import annotations

import dataclasses

import click

from ..errors import InvalidArgument
from ..pfs import names
from ..serving.batching import MAX_BATCH_DELAY, MAX_BATCH_SIZE
from .context import NAME


@click.command("serve")
@click.option("--repo", envvar="PIPECTL_SERVING_REPO", type=NAME,
              help="Repo holding the model (e.g. the train pipeline's output) [env PIPECTL_SERVING_REPO].")
@click.option("--branch", default="master", show_default=True, envvar="PIPECTL_SERVING_BRANCH",
              help="Branch whose head commit is served [env PIPECTL_SERVING_BRANCH].")
@click.option("--model", "model_options", multiple=True, envvar="PIPECTL_SERVING_MODEL", metavar="NAME[=REPO[@BRANCH]]",
              help="Model name in URLs, /predictions/<model> (default: the repo's name); repeat NAME=REPO@BRANCH "
                   "to serve several models [env PIPECTL_SERVING_MODEL, space-separated].")
@click.option("--handler", required=True, envvar="PIPECTL_SERVING_HANDLER", metavar="PATH.py",
              help="Python file defining load(model_dir), for every model [env PIPECTL_SERVING_HANDLER].")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True,
              help="HTTP port to listen on.")
@click.option("--grpc-port", type=click.IntRange(1, 65535), envvar="PIPECTL_SERVING_GRPC_PORT",
              help="Also serve the KServe v2 gRPC protocol on this port (Triton's is 8001) "
                   "[env PIPECTL_SERVING_GRPC_PORT].")
@click.option("--poll-interval", type=float, default=1.0, show_default=True,
              envvar="PIPECTL_SERVING_POLL_INTERVAL",
              help="Seconds between checks of the branch head [env PIPECTL_SERVING_POLL_INTERVAL].")
@click.option("--max-batch-size", type=click.IntRange(1), default=MAX_BATCH_SIZE, show_default=True,
              envvar="PIPECTL_SERVING_MAX_BATCH_SIZE",
              help="Rows of concurrent requests run as one forward pass, at most; 1 turns batching off "
                   "[env PIPECTL_SERVING_MAX_BATCH_SIZE].")
@click.option("--max-batch-delay", type=click.FloatRange(0), default=MAX_BATCH_DELAY * 1000, show_default=True,
              envvar="PIPECTL_SERVING_MAX_BATCH_DELAY", metavar="MS",
              help="Milliseconds a request may wait for others to join its batch; at 0 a batch holds the "
                   "requests that arrived while the previous one ran [env PIPECTL_SERVING_MAX_BATCH_DELAY].")
@click.option("--unready-while-loading", is_flag=True, envvar="PIPECTL_SERVING_UNREADY_WHILE_LOADING",
              help="Answer the readiness checks (/ping, /v2/health/ready) 503 while a new model version loads, "
                   "so that a load balancer sends requests to other replicas meanwhile.")
@click.option("--access-log", is_flag=True, help="Log every request.")
@click.option("--max-rows", type=click.IntRange(1), default=10_000, show_default=True,
              envvar="PIPECTL_SERVING_MAX_ROWS",
              help="Rows one request may hold; more get a 413 [env PIPECTL_SERVING_MAX_ROWS].")
@click.option("--log-repo", type=NAME, envvar="PIPECTL_SERVING_LOG_REPO",
              help="Commit every answered prediction (inputs, outputs, model commit, time) to this repo, as "
                   "JSON lines, created if missing [env PIPECTL_SERVING_LOG_REPO].")
@click.option("--log-interval", type=float, default=10.0, show_default=True,
              help="Seconds between commits of the prediction log (sooner after 1,000 predictions).")
@click.pass_obj
def serve(obj, repo, branch, model_options, handler, host, port, grpc_port, poll_interval, max_batch_size,
          max_batch_delay, unready_while_loading, access_log, max_rows, log_repo, log_interval):
    """Serve the newest model of REPO@BRANCH over HTTP, reloading when it moves.

    The head commit's files are downloaded and passed to the handler's
    load(model_dir). API (TorchServe / MXNet Model Server and KServe v2):
    GET /ping, GET /models, GET /models/<model>, POST /predictions/<model>
    (JSON or text/csv), GET /v2/health/ready, GET /v2/models/<model>,
    POST /v2/models/<model>/infer; with --grpc-port, the KServe v2 gRPC
    service. Every prediction names the model version (the model commit
    id). Stop with Ctrl-C or SIGTERM.
    """
    from ..serving.server import ModelSource
    from ..serving.server import serve as run
    models = [_source(text, obj) for text in model_options if "=" in text]
    plain = [text for text in model_options if "=" not in text]
    if repo is not None:
        models.insert(0, ModelSource(plain[0] if plain else names.bare(repo), repo, branch))
    if len(plain) > (1 if repo is not None else 0):
        raise InvalidArgument(f"--model {plain[-1]}: give --repo for a plain model name, or NAME=REPO[@BRANCH]")
    run(obj.client.store, models, handler, host, port, grpc_port=grpc_port, poll_interval=poll_interval,
        access_log=access_log, max_rows=max_rows, max_batch_size=max_batch_size,
        max_batch_delay=max_batch_delay / 1000, unready_while_loading=unready_while_loading, log_repo=log_repo,
        log_interval=log_interval)


def _source(text: str, obj):
    """``NAME=REPO[@BRANCH]`` with the repo put in ``--project``."""
    from ..serving.server import ModelSource
    source = ModelSource.parse(text)
    return dataclasses.replace(source, repo=obj.qualify(source.repo))


COMMANDS = [serve]
"""The commands this module adds to the CLI, in help order."""
