"""Pipeline, job, datum and controller commands (pachctl 1.8 forms)."""

from __future__ import annotations

import logging
import os
import signal
import socket

import click

from ..errors import InvalidArgument, NotFound
from ..pfs import names
from ..pps import spec as specs
from ..pps.executors import WORKER_IMAGE
from . import output
from .context import NAME, current
from .output import all_projects_option, raw_option


def _read_specs(path: str) -> list[tuple[object, str]]:
    """The parsed specs in file ``path`` (``-``: stdin), in order, each with
    its name for errors (``FILE``, or ``FILE (spec K of N)`` when the file
    holds several, as a JSON stream or YAML documents)."""
    if path == "-":
        found, source = specs.parse_all(click.get_text_stream("stdin").read(), "stdin"), "stdin"
    else:
        try:
            with open(path) as f:
                found, source = specs.parse_all(f.read(), path), path
        except FileNotFoundError:
            raise NotFound(f"spec file {path} does not exist") from None
        except UnicodeDecodeError:
            raise InvalidArgument(f"{path}: not a spec: not UTF-8 text") from None
        except IsADirectoryError:
            raise InvalidArgument(f"{path} is a directory, not a spec file") from None
    if not found:
        raise InvalidArgument(f"{source}: holds no spec")
    found = [_in_project(spec) for spec in found]
    if len(found) == 1:
        return [(found[0], source)]
    return [(spec, f"{source} (spec {k} of {len(found)})") for k, spec in enumerate(found, 1)]


def _in_project(spec: object) -> object:
    """A spec naming no project, put in ``--project`` (as pachctl puts it in
    the context's project); validation reports anything malformed."""
    project = current().project
    pipeline = spec.get("pipeline") if isinstance(spec, dict) else None
    if project != names.DEFAULT_PROJECT and isinstance(pipeline, dict) and not pipeline.get("project"):
        spec = dict(spec, pipeline=dict(pipeline, project={"name": project}))  # type: ignore[arg-type]
    return spec


def _input_text(node: dict) -> str:
    if "pfs" in node:
        p = node["pfs"]
        return f"{p['repo']}:{p['glob']}"
    if "cron" in node:
        return f"cron {node['cron']['name']} ({node['cron']['spec']})"
    kind = next(k for k in ("cross", "union", "join", "group") if k in node)
    joiner = {"cross": " ⨯ ", "union": " ∪ ", "join": " ⋈ ", "group": ", "}[kind]
    text = "(" + joiner.join(_input_text(c) for c in node[kind]) + ")"
    return "group" + text if kind == "group" else text


def _shorten(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[:width - 3].rstrip() + "..."


def _progress(job) -> str:
    return f"{job.datums_processed} + {job.datums_skipped} / {job.datums_total}"


def _job_duration(job) -> float | None:
    from ..pfs.model import parse_time
    if not job.started:
        return None
    end = parse_time(job.finished) if job.finished else None
    if end is None:
        import datetime as dt
        end = dt.datetime.now(dt.UTC)
    return (end - parse_time(job.started)).total_seconds()



@click.command("create-pipeline")
@click.option("-f", "--file", "path", required=True, help="Spec file (JSON or YAML), or '-' for stdin.")
def create_pipeline(path):
    """Create a pipeline (and its output repo) from each spec in the file,
    in order (a file may hold several, as a JSON stream or YAML documents)."""
    for spec, source in _read_specs(path):
        current().client.create_pipeline(spec, source)

@click.command("update-pipeline")
@click.option("-f", "--file", "path", required=True, help="Spec file (JSON or YAML), or '-' for stdin.")
@click.option("--reprocess", is_flag=True, help="Reprocess every datum, even ones already processed.")
def update_pipeline(path, reprocess):
    """Replace each named pipeline's spec with a new version (every spec in
    the file, in order)."""
    for spec, source in _read_specs(path):
        current().client.update_pipeline(spec, reprocess, source)

@click.command("list-pipeline")
@all_projects_option
@raw_option
def list_pipeline(all_projects, raw):
    """List the pipelines of the project: NAME, VERSION, INPUT, CREATED, STATE, LAST JOB."""
    pipelines = [s for s in current().client.list_pipelines() if all_projects or current().owns(s.info.name)]
    if raw:
        return output.raw([s.to_dict() for s in pipelines])
    output.table(["NAME", "VERSION", "INPUT", "CREATED", "STATE", "LAST JOB", "DESCRIPTION"],
                 [[p.name, p.version, _input_text(p.spec["input"]), output.ago(p.created), p.state,
                   s.last_job_state, _shorten(p.spec.get("description", ""))]
                  for s in pipelines for p in [s.info]])

@click.command("inspect-pipeline")
@click.argument("pipeline", type=NAME)
@raw_option
def inspect_pipeline(pipeline, raw):
    """Show a pipeline's spec, version and state."""
    p = current().client.inspect_pipeline(pipeline)
    if raw:
        return output.raw(p.to_dict())
    t = p.spec["transform"]
    click.echo(f"Name: {p.name}\nDescription: {p.spec.get('description', '')}\nVersion: {p.version}\n"
               f"State: {p.state}\nCreated: {output.ago(p.created)}\nUpdated: {output.ago(p.updated)}\n"
               f"Image: {t['image']}\nCmd: {' '.join(t['cmd'])}\nInput: {_input_text(p.spec['input'])}\n"
               f"Parallelism: {p.spec['parallelism_spec'].get('constant', 1)}\n"
               f"Datum tries: {p.spec['datum_tries']}\nOutput branch: {p.output_branch}")

@click.command("delete-pipeline")
@click.argument("pipeline", type=NAME)
@click.option("--keep-repo", is_flag=True, help="Keep the pipeline's output repo.")
def delete_pipeline(pipeline, keep_repo):
    """Delete a pipeline, its jobs and its output repo."""
    current().client.delete_pipeline(pipeline, keep_repo)

@click.command("stop-pipeline")
@click.argument("pipeline", type=NAME)
def stop_pipeline(pipeline):
    """Pause a pipeline: no new jobs start until start-pipeline."""
    current().client.stop_pipeline(pipeline)

@click.command("start-pipeline")
@click.argument("pipeline", type=NAME)
def start_pipeline(pipeline):
    """Resume a paused pipeline."""
    current().client.start_pipeline(pipeline)

@click.command("run-cron")
@click.argument("pipeline", type=NAME)
def run_cron(pipeline):
    """Commit a tick to each cron input of PIPELINE now (a job follows)."""
    for repo in current().client.run_cron(pipeline):
        click.echo(f"ticked {repo}")

@click.command("run-pipeline")
@click.argument("pipeline", type=NAME)
@click.argument("commits", nargs=-1, metavar="[REPO@COMMIT]...")
@click.option("--reprocess", is_flag=True, help="Run every datum again, not only those that did not succeed.")
def run_pipeline(pipeline, commits, reprocess):
    """Rerun PIPELINE's newest job as a new job: over the same input
    commits, or over REPO@COMMIT (or REPO@BRANCH) in place of an input's.
    Datums that succeeded before are reused, so after a failure only the
    failed datums run, unless --reprocess. Prints the new job's id."""
    pairs = []
    for c in commits:
        repo, at, ref = c.partition("@")
        if not at or not repo or not ref:
            raise click.BadParameter(f"{c!r}: expected REPO@COMMIT or REPO@BRANCH", param_hint="COMMITS")
        pairs.append((current().qualify(repo), ref))
    click.echo(current().client.run_pipeline(pipeline, pairs, reprocess).id)

# jobs ----------------------------------------------------------------
@click.command("list-job")
@click.option("-p", "--pipeline", type=NAME, help="Only this pipeline's jobs.")
@all_projects_option
@raw_option
def list_job(pipeline, all_projects, raw):
    """List the jobs of the project's pipelines (or of one), newest first."""
    jobs = [j for j in current().client.list_jobs(pipeline) if pipeline or all_projects or current().owns(j.pipeline)]
    if raw:
        return output.raw([j.to_dict() for j in jobs])
    output.table(["ID", "PIPELINE", "STARTED", "DURATION", "RESTART", "PROGRESS", "DL", "UL", "STATE"],
                 [[j.id, j.pipeline, output.ago(j.started), output.duration(_job_duration(j)), j.restarts,
                   _progress(j), output.size(j.bytes_downloaded), output.size(j.bytes_uploaded), j.state]
                  for j in jobs])

@click.command("inspect-job")
@click.argument("job")
@raw_option
def inspect_job(job, raw):
    """Show a job: inputs, datum counts, bytes, state and failure reason."""
    j = current().client.inspect_job(job)
    if raw:
        return output.raw(j.to_dict())
    lines = [f"ID: {j.id}", f"Pipeline: {j.pipeline} (spec version {j.pipeline_version})",
             f"State: {j.state}", f"Started: {output.ago(j.started)}",
             f"Duration: {output.duration(_job_duration(j))}", f"Restarts: {j.restarts}",
             f"Datums: {j.datums_total} total, {j.datums_processed} processed, {j.datums_skipped} skipped, "
             f"{j.datums_failed} failed, {j.datums_recovered} recovered, {j.datums_retried} retried",
             f"Data: {output.size(j.bytes_downloaded)} downloaded, {output.size(j.bytes_uploaded)} uploaded",
             f"Output commit: {j.pipeline}@{j.output_commit}", "Inputs:"]
    lines += [f"  {i['name']}: {i['repo']}@{i['commit']} (branch {i['branch']})" for i in j.inputs]
    if j.reason:
        lines.append("Reason: " + j.reason.replace("\n", "\n  "))
    click.echo("\n".join(lines))

@click.command("stop-job")
@click.argument("job")
def stop_job(job):
    """Stop a running job (its state becomes killed)."""
    current().client.stop_job(job)

@click.command("list-datum")
@click.argument("job", required=False)
@click.option("-f", "--file", "path", help="Instead of a job's: the datums this spec would make now (nothing is "
                                           "created), as pachctl list datum -f.")
@raw_option
def list_datum(job, path, raw):
    """List a job's datums: ID, FILES, STATUS, TIME."""
    if bool(job) == bool(path):
        raise InvalidArgument("give a JOB or --file SPEC")
    if path:
        (spec, source), *more = _read_specs(path)
        if more:
            raise InvalidArgument(f"{path} holds {len(more) + 1} specs; list-datum -f takes one")
        rows = current().client.plan_datums(spec, source)
        if raw:
            return output.raw(rows)
        return output.table(["ID", "FILES"], [[r["id"], r["files"]] for r in rows])
    rows = current().client.list_datums(job)
    if raw:
        return output.raw(rows)
    output.table(["ID", "FILES", "STATUS", "TIME"],
                 [[r["id"], r["files"], r["state"], output.duration(r["seconds"])] for r in rows])

@click.command("inspect-datum")
@click.argument("job")
@click.argument("datum")
@raw_option
def inspect_datum(job, datum, raw):
    """Show one datum's result: state, attempts, outputs, error."""
    r = current().client.inspect_datum(job, datum)
    if raw:
        return output.raw(r.to_dict())
    click.echo(f"ID: {r.id}\nState: {r.state}\nAttempts: {r.attempts}\nWorker: {r.worker}\n"
               f"Time: {output.duration(r.seconds)}\nDownloaded: {output.size(r.bytes_downloaded)}\n"
               f"Uploaded: {output.size(r.bytes_uploaded)}\nOutputs: {', '.join(sorted(r.outputs)) or '-'}"
               + (f"\nError: {r.error}" if r.error else ""))

@click.command("get-logs")
@click.option("-p", "--pipeline", type=NAME, help="Logs of this pipeline's latest job (unless --job).")
@click.option("--job", help="Logs of this job.")
@click.option("--datum", help="Only this datum (id or 8+ character prefix).")
@click.option("--workers", is_flag=True, help="The logs of the worker processes (e.g. Kubernetes pods) instead.")
@raw_option
def get_logs(pipeline, job, datum, workers, raw):
    """Print the output of user code, per datum (or of the workers)."""
    client = current().client
    if workers:
        logs = client.worker_logs(pipeline, job)
        if raw:
            return output.raw([{"worker": w, "log": text} for w, text in sorted(logs.items())])
        for w, text in sorted(logs.items()):
            for line in text.rstrip("\n").splitlines():
                click.echo(f"[{w}] {line}")
        return
    chosen = client.datum_logs(pipeline, job, datum)
    if raw:
        return output.raw([{"datum": r.id, "state": r.state, "log": r.log} for r in chosen])
    for r in chosen:
        if r.log:
            for line in r.log.rstrip("\n").splitlines():
                click.echo(f"[{r.id[:12]}] {line}")

@click.command("flush-commit")
@click.argument("repo", type=NAME)
@click.argument("commit")
@click.option("--timeout", type=float, help="Give up after this many seconds.")
@raw_option
def flush_commit(repo, commit, timeout, raw):
    """Wait for every downstream commit of REPO@COMMIT, then list them."""
    commits = current().client.flush_commit(repo, commit, timeout)
    if raw:
        return output.raw([c.to_dict() for c in commits])
    from .pfs_commands import _commit_row
    output.table(["REPO", "BRANCH", "COMMIT", "PARENT", "STARTED", "DURATION", "SIZE"],
                 [_commit_row(c) for c in commits])

# controller ----------------------------------------------------------
@click.command("controller")
@click.option("--exit-when-idle", is_flag=True, help="Process all pending work, then exit.")
@click.option("--executor", type=click.Choice(["process", "docker", "kubernetes"]), default="process",
              show_default=True, envvar="PIPECTL_EXECUTOR", help="Where workers run [env PIPECTL_EXECUTOR].")
@click.option("--local-images", type=click.Path(dir_okay=False), envvar="PIPECTL_LOCAL_IMAGES",
              help="JSON file mapping images to local environments (process executor).")
@click.option("--secrets-dir", type=click.Path(file_okay=False, exists=True), envvar="PIPECTL_SECRETS_DIR",
              help="Directory of the Secrets transform.secrets names, laid out as Kubernetes mounts them "
                   "(DIR/<secret>/<key>; process, docker) [env PIPECTL_SECRETS_DIR].")
@click.option("--egress-dir", "egress_dirs", multiple=True, type=click.Path(file_okay=False),
              envvar="PIPECTL_EGRESS_DIR", help="A directory file:///... egress targets may lie under (repeatable; "
              "none by default: a spec names the target, the controller writes it) [env PIPECTL_EGRESS_DIR].")
@click.option("--worker-image", envvar="PIPECTL_WORKER_IMAGE", default=WORKER_IMAGE, show_default=True,
              help="pipectl's image, which runs each worker next to the user code's container: it alone holds the "
                   "store's credentials (docker, kubernetes) [env PIPECTL_WORKER_IMAGE].")
@click.option("--namespace", envvar="PIPECTL_K8S_NAMESPACE",
              help="Namespace of worker Jobs (kubernetes; default: the pod's or kubeconfig's).")
@click.option("--worker-service-account", envvar="PIPECTL_K8S_WORKER_SERVICE_ACCOUNT",
              help="ServiceAccount of worker pods (kubernetes).")
@click.option("--store-secret", envvar="PIPECTL_K8S_STORE_SECRET",
              help="Secret holding the store credentials (AWS_*), given to worker pods (kubernetes).")
@click.option("--job-ttl", type=click.IntRange(0), default=600, show_default=True, envvar="PIPECTL_K8S_JOB_TTL",
              help="Seconds a finished Kubernetes Job is kept if the controller did not delete it.")
@click.option("--image-pull-policy", type=click.Choice(["IfNotPresent", "Always", "Never"]),
              default="IfNotPresent", show_default=True, envvar="PIPECTL_K8S_IMAGE_PULL_POLICY",
              help="imagePullPolicy of worker pods (kubernetes).")
@click.option("--lease-seconds", type=click.FloatRange(2, 3600), default=15, show_default=True,
              envvar="PIPECTL_LEASE_SECONDS",
              help="How long the store's controller lease outlives its last renewal. One controller per store runs "
                   "jobs; another waits for the lease (at once if its holder died on this host).")
@click.option("--leader-elect/--no-leader-elect", default=False, show_default=True, envvar="PIPECTL_LEADER_ELECT",
              help="Also hold a Kubernetes Lease (replicas of the Helm chart's Deployment elect on it).")
@click.option("--lease-name", default="pipectl-controller", show_default=True, envvar="PIPECTL_LEASE_NAME",
              help="Name of the Lease (in --namespace) replicas elect a leader with.")
@click.option("--poll-interval", type=float, default=0.2, show_default=True,
              help="Seconds between checks of input branches.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
              default="info", show_default=True, envvar="PIPECTL_LOG_LEVEL", help="Least severe level logged.")
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail (--log-level debug).")
def controller(exit_when_idle, executor, local_images, secrets_dir, egress_dirs, worker_image, namespace,
               worker_service_account, store_secret, job_ttl, image_pull_policy, lease_seconds, leader_elect,
               lease_name, poll_interval, log_level, verbose):
    """Watch input repos and run pipeline jobs (until stopped)."""
    from ..pps.controller import Controller
    from ..pps.executors import make_executor
    if leader_elect and executor == "process":
        raise InvalidArgument("--leader-elect needs --executor docker or kubernetes: the process executor "
                              "forks its workers, which a lease renewal thread makes unsafe")
    logging.basicConfig(level=logging.DEBUG if verbose else log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("botocore", "urllib3", "kubernetes"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    store = current().client.store
    options = {
        "process": {"local_images": local_images, "secrets_dir": secrets_dir},
        "docker": {"worker_image": worker_image, "secrets_dir": secrets_dir},
        "kubernetes": {"worker_image": worker_image, "namespace": namespace, "service_account": worker_service_account,
                       "store_secret": store_secret, "job_ttl": job_ttl, "image_pull_policy": image_pull_policy},
    }[executor]
    # SIGTERM (docker stop, kubectl delete) unwinds like Ctrl-C, so that
    # running workers are stopped and removed on the way out.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    from ..pps.lease import StoreLease
    lease = StoreLease(store, lease_seconds=lease_seconds, renew_seconds=lease_seconds * 2 / 3,
                       retry_seconds=min(1.0, lease_seconds / 5))
    leases: list = []
    try:
        lease.acquire()  # before the executor, which cleans up after an earlier controller
        leases.append(lease)
        if leader_elect:
            leases.append(_elect_leader(namespace, lease_name))
        ex = make_executor(executor, store.url, **options)
        Controller(store, ex, poll_interval, leases=tuple(leases), egress_dirs=egress_dirs).run(exit_when_idle)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: a requested stop, once workers are cleaned up
        logging.getLogger("pipectl.controller").info("stopped")
    finally:
        for held in reversed(leases):
            held.release()


COMMANDS = [create_pipeline, update_pipeline, list_pipeline, inspect_pipeline, delete_pipeline, stop_pipeline,
            start_pipeline, run_cron, run_pipeline, list_job, inspect_job, stop_job, list_datum, inspect_datum,
            get_logs, flush_commit, controller]
"""The commands this module adds to the CLI, in help order."""


def _elect_leader(namespace: str | None, lease_name: str):
    """Block until this process holds the controller Lease; return the elector."""
    from ..pps.executors.kubernetes import default_namespace, load_client_config
    from ..pps.leader import LeaseElector
    load_client_config()
    identity = os.environ.get("PIPECTL_POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    leader = LeaseElector(namespace or default_namespace(), lease_name, identity)
    leader.acquire()
    return leader
