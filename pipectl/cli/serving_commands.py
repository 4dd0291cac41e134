"""``pipectl serve``: the model server (see :mod:`pipectl.serving`).

The serving code (and Starlette, uvicorn, the handler's numpy/MXNet) is
imported only when the command runs, so the rest of the CLI needs none of it.
"""

from __future__ import annotations

import click

from ..pfs import names
from .context import NAME


@click.command("serve")
@click.option("--repo", required=True, envvar="PIPECTL_SERVING_REPO", type=NAME,
              help="Repo holding the model (e.g. the train pipeline's output) [env PIPECTL_SERVING_REPO].")
@click.option("--branch", default="master", show_default=True, envvar="PIPECTL_SERVING_BRANCH",
              help="Branch whose head commit is served [env PIPECTL_SERVING_BRANCH].")
@click.option("--model", default=None, envvar="PIPECTL_SERVING_MODEL",
              help="Model name in URLs, /predictions/<model> [env PIPECTL_SERVING_MODEL; default: the repo's "
                   "name].")
@click.option("--handler", required=True, envvar="PIPECTL_SERVING_HANDLER", metavar="PATH.py",
              help="Python file defining load(model_dir) [env PIPECTL_SERVING_HANDLER].")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True,
              help="Port to listen on.")
@click.option("--poll-interval", type=float, default=1.0, show_default=True,
              envvar="PIPECTL_SERVING_POLL_INTERVAL",
              help="Seconds between checks of the branch head [env PIPECTL_SERVING_POLL_INTERVAL].")
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
def serve(obj, repo, branch, model, handler, host, port, poll_interval, access_log, max_rows, log_repo,
          log_interval):
    """Serve the newest model of REPO@BRANCH over HTTP, reloading when it moves.

    The head commit's files are downloaded and passed to the handler's
    load(model_dir). API (TorchServe / MXNet Model Server and KServe v2):
    GET /ping, GET /models, GET /models/<model>, POST /predictions/<model>
    (JSON or text/csv), GET /v2/health/ready, GET /v2/models/<model>,
    POST /v2/models/<model>/infer. Every prediction names the model
    version (the model commit id). Stop with Ctrl-C or SIGTERM.
    """
    from ..serving.server import serve as run
    run(obj.client.store, repo, branch, model or names.bare(repo), handler, host, port, poll_interval, access_log,
        max_rows, log_repo, log_interval)


COMMANDS = [serve]
"""The commands this module adds to the CLI, in help order."""
