"""The ``pipectl`` command line, in pachctl 1.x form.

Every command takes ``--store`` (or ``$PIPECTL_STORE``). Errors the user can
act on print ``error: <message>`` on one line and exit with status 1.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys

import click

from .. import __version__
from ..errors import PipectlError
from ..pfs import names
from .context import Context


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--store", envvar="PIPECTL_STORE", metavar="URL",
              help="Store URL: file:///dir or s3://bucket/prefix, or a pipectl server, http(s)://host:port "
                   "(token in $PIPECTL_TOKEN) [env PIPECTL_STORE, else PIPECTL_ADDRESS for a server; default: "
                   "a directory under the user's data dir].")
@click.option("--project", envvar="PIPECTL_PROJECT", metavar="NAME", default="default", show_default=True,
              help="The project that repo and pipeline names belong to (Pachyderm 2.x); a name given as "
                   "PROJECT/NAME names its own [env PIPECTL_PROJECT].")
@click.version_option(__version__, prog_name="pipectl")
@click.pass_context
def cli(ctx: click.Context, store: str | None, project: str) -> None:
    """pipectl: versioned data repositories and containerized ML pipelines.

    Data lives in repos of immutable commits; pipelines (Pachyderm JSON specs)
    turn input repos into output repos whenever new data lands.
    """
    ctx.obj = Context(store, names.check_name("project", project))


from . import pfs_commands, pps_commands, server_commands, serving_commands  # noqa: E402

for _command in pfs_commands.COMMANDS + pps_commands.COMMANDS + serving_commands.COMMANDS + server_commands.COMMANDS:
    cli.add_command(_command)


def main() -> None:
    """Console entry point: run the CLI, turning pipectl errors into one line."""
    # At exit, skip the interpreter's final garbage collection over every live
    # object: 0.13 s once an S3 client (its parsed service models) is
    # loaded, 0.01 s frozen. Exit handlers still run; only garbage caught in
    # reference cycles is left to the operating system.
    atexit.register(gc.freeze)
    try:
        code = cli.main(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except PipectlError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as e:  # one line, pointing at the command's help
        where = f" (see '{e.ctx.command_path} --help')" if e.ctx else ""
        click.echo(f"error: {e.format_message()}{where}", err=True)
        sys.exit(2)
    except click.ClickException as e:
        click.echo(f"error: {e.format_message()}", err=True)
        sys.exit(e.exit_code or 1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
    except OSError as e:
        click.echo(f"error: {e.strerror or e}" + (f": {e.filename}" if e.filename else ""), err=True)
        sys.exit(1)
    except Exception as e:  # a bug: still one line, with the way to the traceback
        if os.environ.get("PIPECTL_DEBUG"):
            raise
        click.echo(f"error: internal error ({type(e).__name__}: {e}); "
                   "rerun with PIPECTL_DEBUG=1 for details and please report it", err=True)
        sys.exit(2)
