"""The web console: server-rendered pages (Jinja2 templates shipped in the
package, no build step) over the operations layer, served by the same
process and port as the API.

Pages: ``/`` the DAG of repos and pipelines (laid out by Graphviz's
``dot``, from Debian's ``graphviz``; a plain list where it is missing) with
each pipeline's state and newest job; ``/pipelines/{name}`` its spec and
jobs; ``/jobs/{job}`` its datums (processed, reused from an earlier job,
failed, recovered) and ``/jobs/{job}/datums/{datum}`` a datum's log;
``/repos/{repo}`` branches and commits; ``/repos/{repo}/commits/{ref}/browse/{path}``
a file browser with previews (text, CSV as a table, images), download, the
diff against the parent commit, the commit's provenance as a graph and an
upload form (a new commit, through the API); ``/model`` the model server's
served model commit and a prediction form (with ``--model-server``). A
failed newest job's page offers "rerun failed datums" (``run-pipeline``).
Pages refresh their content from the API's watch streams
(``static/console.js``).

With tokens, ``/login`` trades a token for an HttpOnly, SameSite=Strict
cookie; a write through the cookie also needs the ``X-Pipectl-Console``
header, which another site's form cannot send.
"""

from __future__ import annotations

import csv
import functools
import importlib.resources
import io
import shutil
import subprocess
import urllib.parse
from typing import Any

from fastapi import Body, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from ..client import Client
from ..errors import NotFound, PipectlError, http_status
from ..parallel import concurrently
from ..pfs import Commit
from ..pps import spec as specs
from .auth import COOKIE, request_role, role_of
from .models import ModelServer, require
from .paths import FILE, NAME

PREVIEW_BYTES = 256 << 10
"""The most of a file a preview shows."""
STATE_COLOURS = {"success": "#2e7d32", "failure": "#c62828", "running": "#1565c0", "created": "#1565c0",
                 "egressing": "#1565c0",
                 "killed": "#6d4c41", "paused": "#757575", "-": "#757575"}


def add_console(app: FastAPI, client: Client, tokens: dict[str, str] | None,
                models: ModelServer | None = None) -> None:
    """Add the console's pages, login and static files to ``app``
    (``models``: the model server, whose page the console then has)."""
    package = importlib.resources.files(__package__)
    templates = Jinja2Templates(directory=str(package / "templates"))
    templates.env.globals["colour"] = lambda state: STATE_COLOURS.get(state, "#757575")
    templates.env.globals["model_server"] = models is not None
    templates.env.filters["q"] = NAME.to_string  # a name in a link: staging/images is one segment
    templates.env.filters["qpath"] = FILE.to_string  # a file path in a link
    app.mount("/static", StaticFiles(directory=str(package / "static")), name="static")

    def page(request: Request, name: str, **context: Any) -> HTMLResponse:
        if tokens and request_role(tokens, None, request.cookies.get(COOKIE))[0] is None:
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)  # type: ignore[return-value]
        try:
            return templates.TemplateResponse(request, name, context)
        except PipectlError as e:  # not found, a model server unreachable, ...
            return templates.TemplateResponse(request, "error.html", {"error": str(e)}, status_code=http_status(e))

    @app.get("/login", include_in_schema=False)
    def login_form(request: Request, next: str = "/") -> HTMLResponse:
        return templates.TemplateResponse(request, "login.html", {"next": _local(next)})

    @app.post("/login", include_in_schema=False)
    def login(token: str = Body(..., embed=True)) -> JSONResponse:
        if not tokens or role_of(tokens, f"Bearer {token}") is None:
            return JSONResponse({"error": "unknown token"}, status_code=401)
        response = JSONResponse({"ok": True})
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.get("/", include_in_schema=False)
    def dag(request: Request) -> HTMLResponse:
        return page(request, "dag.html", **_dag(client))

    @app.get("/pipelines/{name:name}", include_in_schema=False)
    def pipeline(request: Request, name: str) -> HTMLResponse:
        return page(request, "pipeline.html", pipeline=_lazy(client.inspect_pipeline, name),
                    jobs=_lazy(client.list_jobs, name))

    @app.get("/jobs/{job}", include_in_schema=False)
    def job(request: Request, job: str) -> HTMLResponse:
        info = _lazy(client.inspect_job, job)
        return page(request, "job.html", job=info, datums=_lazy(client.list_datums, job),
                    newest=_lazy(lambda: client.latest_job(info.value.pipeline).id == job))

    @app.get("/jobs/{job}/datums/{datum}", include_in_schema=False)
    def datum(request: Request, job: str, datum: str) -> HTMLResponse:
        return page(request, "datum.html", job=job, datum=_lazy(client.inspect_datum, job, datum))

    @app.get("/repos/{repo:name}", include_in_schema=False)
    def repo(request: Request, repo: str) -> HTMLResponse:
        return page(request, "repo.html", repo=_lazy(client.inspect_repo, repo),
                    branches=_lazy(client.list_branches, repo), commits=_lazy(client.list_commits, repo, None, 100))

    @app.get("/model", include_in_schema=False)
    def model(request: Request) -> HTMLResponse:
        return page(request, "model.html", models=_lazy(_models, require(models)))

    @app.get("/repos/{repo:name}/commits/{ref}/browse", include_in_schema=False)
    @app.get("/repos/{repo:name}/commits/{ref}/browse/{path:file}", include_in_schema=False)
    def browse(request: Request, repo: str, ref: str, path: str = "") -> HTMLResponse:
        return page(request, "browse.html", repo=repo, ref=ref, path="/" + path,
                    view=_lazy(_browse, client, repo, ref, "/" + path))


class _lazy:
    """A call made when a template first uses its value, so that an error
    it raises becomes the console's error page (see ``page``)."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    @functools.cached_property
    def value(self):
        return self.fn(*self.args)


def _dag(client: Client) -> dict:
    """The pipelines (with their newest job), the repos, and the DAG as SVG
    (None without Graphviz)."""
    pipelines = []
    for summary in client.list_pipelines():  # each with its newest job, read once
        inputs = sorted({p["repo"] for p in specs.pfs_inputs(summary.info.spec["input"])})
        pipelines.append({"info": summary.info, "job": summary.last_job, "inputs": inputs})
    produced = {p["info"].name for p in pipelines}
    repos = [r for r in client.list_repos() if r.info.name not in produced]
    return {"pipelines": pipelines, "repos": repos, "svg": _graph_svg(pipelines, repos)}


def _graph_svg(pipelines: list[dict], repos: list) -> str | None:
    """The DAG laid out by Graphviz ``dot`` as inline SVG, nodes linking to
    their pages; None when ``dot`` is not installed or fails."""
    lines = []
    for r in repos:  # names are letters, digits, _ - . and one / (pipectl.pfs.names): safe in quotes
        lines.append(f'"repo:{r.info.name}" [label="{r.info.name}", shape=cylinder, '
                     f'href="/repos/{NAME.to_string(r.info.name)}", id="repo-{r.info.name}"];')
    for p in pipelines:
        info, job = p["info"], p["job"]
        state = "paused" if info.state == "paused" else (job.state if job else "-")
        progress = f"\\n{job.datums_processed + job.datums_skipped}/{job.datums_total} datums" if job else ""
        lines.append(f'"pipeline:{info.name}" [label="{info.name}\\n{state}{progress}", shape=box, '
                     f'color="{STATE_COLOURS.get(state, "#757575")}", penwidth=2, '
                     f'href="/pipelines/{NAME.to_string(info.name)}", id="pipeline-{info.name}"];')
        for name in p["inputs"]:
            source = f"pipeline:{name}" if any(q["info"].name == name for q in pipelines) else f"repo:{name}"
            lines.append(f'"{source}" -> "pipeline:{info.name}";')
    return _dot_svg(lines)


def _provenance_svg(client: Client, commit: Commit) -> str | None:
    """``commit``'s provenance as a graph (inline SVG by Graphviz ``dot``;
    None without it): a node per commit, an edge from each input commit of
    the job that made a commit to that commit. Reads each upstream commit
    made by a pipeline and its job: one level of a chain per read."""
    nodes = {(commit.repo, commit.id): commit.branch}
    nodes.update({(p["repo"], p["commit"]): p.get("branch") or "" for p in commit.provenance})
    lines, edges = [], set()
    made = [commit] + concurrently(*[functools.partial(client.inspect_commit, p["repo"], p["commit"])
                                     for p in commit.provenance if p.get("pipeline_version")])
    jobs = concurrently(*[functools.partial(client.inspect_job, c.job, c.pipeline) for c in made if c.job])
    for job in jobs:
        output = next(c for c in made if c.job == job.id)
        for i in job.inputs:
            edges.add(((i["repo"], i["commit"]), (output.repo, output.id)))
            nodes.setdefault((i["repo"], i["commit"]), i["branch"])
    for (repo, cid), branch in nodes.items():
        here = ', penwidth=2, color="#1565c0"' if cid == commit.id and repo == commit.repo else ""
        lines.append(f'"{repo}@{cid}" [label="{repo}@{cid[:8]}\\n{branch}", shape=box{here}, '
                     f'href="/repos/{NAME.to_string(repo)}/commits/{cid}/browse", id="commit-{repo}-{cid[:8]}"];')
    lines += [f'"{a[0]}@{a[1]}" -> "{b[0]}@{b[1]}";' for a, b in sorted(edges)]
    return _dot_svg(lines)


def _dot_svg(lines: list[str]) -> str | None:
    """A directed graph of Graphviz statements ``lines`` (names are letters,
    digits, ``_ - . / @ :`` only: safe in quotes) laid out left to right by
    ``dot``, as inline SVG; None when ``dot`` is missing or fails."""
    dot = shutil.which("dot")
    if dot is None:
        return None
    source = "\n".join(['digraph g { rankdir=LR; bgcolor="transparent";',
                        'node [fontname="sans-serif", fontsize=11, style=filled, fillcolor="#ffffff"];',
                        *lines, "}"])
    try:
        out = subprocess.run([dot, "-Tsvg"], input=source, capture_output=True, text=True, timeout=30,
                             check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return None
    return out[out.find("<svg"):]


def _models(models: ModelServer) -> list[dict]:
    """The model server's models; each with ``repo`` and ``commit`` (the
    served model's, to link to) where one is loaded."""
    found = models.models()
    for m in found:
        p = m.get("provenance") or {}
        m["repo"], m["commit"] = p.get("repo"), p.get("commit")
    return found


def _browse(client: Client, repo: str, ref: str, path: str) -> dict:
    """What the file browser shows at ``path``: a directory's entries, or a
    file's preview (``text``, ``csv`` rows, ``image``, or none for binary or
    large files); the commit with its diff against its parent."""
    try:
        commit = client.inspect_commit(repo, ref)
    except NotFound:
        if path != "/" or ref not in {b.name for b in client.list_branches(repo)}:
            raise
        return {"commit": None, "branch": ref, "node": None, "entries": [], "preview": None, "diff": None}
    node = client.inspect_file(repo, commit.id, path) if path != "/" else None
    view: dict[str, Any] = {"commit": commit, "branch": commit.branch, "node": node, "entries": None,
                            "preview": None, "provenance": _provenance_svg(client, commit) if commit.provenance
                            else None}
    if node is None or node.type == "dir":
        view["entries"] = client.list_files(repo, commit.id, path)
    else:
        view["preview"] = _preview(client, repo, commit.id, path, node.size)
    try:
        added, removed = client.diff_files(repo, commit.id, "/")
        view["diff"] = {"added": added, "removed": removed}
    except PipectlError:
        view["diff"] = None
    return view


def _preview(client: Client, repo: str, commit: str, path: str, size: int) -> dict:
    lower = path.lower()
    if lower.endswith((".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp")):
        return {"kind": "image"}
    if size > PREVIEW_BYTES:
        return {"kind": "none", "why": f"{size:,} bytes: too large to preview"}
    out = io.BytesIO()
    client.get_file(repo, commit, path, out)
    try:
        text = out.getvalue().decode("utf-8")
    except UnicodeDecodeError:
        return {"kind": "none", "why": "binary"}
    if lower.endswith((".csv", ".tsv")):
        rows = list(csv.reader(io.StringIO(text), delimiter="\t" if lower.endswith(".tsv") else ","))
        return {"kind": "csv", "header": rows[0] if rows else [], "rows": rows[1:201], "more": max(0, len(rows) - 201)}
    return {"kind": "text", "text": text}


def _local(target: str) -> str:
    """``target`` if it is a path of this site (``/...``), else ``/``: never
    ``//host`` or ``/\\host``, which browsers take for another site (an open
    redirect after sign-in)."""
    parts = urllib.parse.urlsplit(target)
    if not target.startswith("/") or target[1:2] in ("/", "\\") or parts.scheme or parts.netloc:
        return "/"
    return target
