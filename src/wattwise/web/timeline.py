"""The energy timeline over commits: a dashboard page, its JSON, and a README badge (as GMT offers).

    GET /timeline?repo=R&branch=B&name=N&phase=P       page: energy per commit, spread of runs, change points
    GET /api/timeline?repo=R&branch=B&name=N&phase=P   the same as JSON (`wattwise timeline --json`)
    GET /timeline/badge.svg?repo=R&branch=B&name=N     the latest commit's energy as a badge

`repo` is the name runs recorded (`host/owner/repo`, or a checkout folder); a git URL is accepted and reduced to
that name. `name` picks one workload (the runs' name) when the repository's runs measure several.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from wattwise.errors import WattwiseError
from wattwise.web.deps import StoreDep, require_read

__all__ = ["router"]

router = APIRouter(dependencies=[Depends(require_read)])

RepoQuery = Annotated[str, Query(max_length=2000, description="repository URL or checkout folder, as recorded")]
BranchQuery = Annotated[str | None, Query(max_length=500)]
PhaseQuery = Annotated[str, Query(max_length=200)]
NameQuery = Annotated[str | None, Query(max_length=200, description="run name: one workload")]


def _repo(repo: str) -> str:
    from wattwise.measure.gitinfo import repository_key

    return repository_key(repo)


def _templates() -> Jinja2Templates:
    from wattwise.web.pages import TEMPLATES, template_globals

    templates = Jinja2Templates(directory=str(TEMPLATES))
    templates.env.globals.update(template_globals())
    return templates


@router.get("/api/timeline", tags=["timeline"], responses={404: {"description": "No finished runs of that repository"}})
def timeline_json(store: StoreDep, repo: RepoQuery, branch: BranchQuery = None, name: NameQuery = None,
                  phase: PhaseQuery = "[RUNTIME]") -> dict[str, Any]:
    """Energy of one phase over the commits of a repository (mean, spread, change points)."""
    from wattwise.analysis.timeline import build_timeline

    try:
        return build_timeline(store, _repo(repo), branch=branch, name=name, phase=phase).to_dict()
    except WattwiseError as exc:
        raise HTTPException(404, str(exc)) from None


@router.get("/timeline/badge.svg", tags=["timeline"], response_class=Response)
def timeline_badge(store: StoreDep, repo: RepoQuery, branch: BranchQuery = None, name: NameQuery = None,
                   phase: PhaseQuery = "[RUNTIME]") -> Response:
    """An SVG badge with the energy of the latest commit's runs (≈ where estimated)."""
    from wattwise.analysis.timeline import build_timeline
    from wattwise.units import format_si
    from wattwise.web.badges import badge_svg

    try:
        result = build_timeline(store, _repo(repo), branch=branch, name=name, phase=phase)
        latest = result.points[-1]
        value = f"{'≈ ' if latest.estimated else ''}{format_si(latest.mean, result.unit)}"
        svg = badge_svg("energy", value, "#c62828" if latest.change and (latest.change_relative or 0) > 0
                                 else "#2e7d32")
    except WattwiseError:
        svg = badge_svg("energy", "no runs", "#9e9e9e")
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "no-cache"})


@router.get("/timeline", response_class=HTMLResponse, include_in_schema=False)
def page_timeline(request: Request, store: StoreDep, repo: str | None = None, branch: str | None = None,
                  name: str | None = None,
                  phase: str = "[RUNTIME]") -> HTMLResponse:
    from wattwise.analysis.timeline import build_timeline, known_repositories

    repos = known_repositories(store)
    result, error = None, None
    if repo is None and repos:
        repo, branch, name = repos[0]
    if repo:
        try:
            result = build_timeline(store, _repo(repo), branch=branch or None, name=name or None, phase=phase)
        except WattwiseError as exc:
            error = str(exc)
    context = {"repos": repos, "repo": repo or "", "branch": branch or "", "name": name or "", "phase": phase,
               "result": result,
               "error": error, "has_cluster": getattr(request.app.state, "has_cluster", False)}
    return _templates().TemplateResponse(request, "timeline.html", context, status_code=200 if not error else 404)
