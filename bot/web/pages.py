"""Read-only pages: the run list (filters and search), a run's page, downloads, the colour sheet."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from backrooms_engine import export, templates
from backrooms_engine.errors import ConfigError
from backrooms_engine.ports import PAGE_SIZE, RunFilter
from backrooms_engine.records import RunRecord
from backrooms_engine.store import RUN_STATUSES

from .. import costs
from .context import Page, WebContext, web
from .render import actor_classes, colours_css, end_label, idle_note, segments
from .respond import error, render, run_id_number

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")  # what a Content-Disposition filename may hold
MEDIA_TYPES = {
    "txt": "text/plain; charset=utf-8",
    "md": "text/markdown; charset=utf-8",
    "json": "application/json",
}


# -- the list --------------------------------------------------------------------------------


class BadFilter(Exception):
    """A list address no form of ours makes (a `before` that is no run id): a 400."""


def _filter(request: Request) -> RunFilter:
    params = request.query_params

    def text(name: str) -> str | None:
        value = params.get(name, "").strip()
        return value or None

    status = text("status")
    before = text("before")
    if before is not None and run_id_number(before) is None:
        raise BadFilter(
            f"before= must be a run number (the older runs link gives one), got {before!r}"
        )
    return RunFilter(
        model=text("model"),
        template=text("template"),
        status=status if status in RUN_STATUSES else None,
        q=text("q"),
        before=run_id_number(before),
    )


async def index(request: Request) -> Response:
    ctx = web(request)
    try:
        f = _filter(request)
    except BadFilter as exc:
        return error(request, 400, str(exc))
    # Read before the page's own reads, so a page is never kept under a newer version than the
    # one it shows (cache.py). Another process's commit changes it too.
    version = await ctx.rt.archive.version()
    page = await ctx.lists.get(f, version, lambda: _list_page(request, ctx, f))
    return unless_unchanged(request, page)


async def _list_page(request: Request, ctx: WebContext, f: RunFilter) -> Page:
    runs = await ctx.rt.archive.find_runs(f, limit=PAGE_SIZE)  # one page: a few queries
    ids = [run.id for run in runs]
    hits = await ctx.rt.archive.hits(f.q, ids) if f.q else {}
    models, used_templates = await ctx.rt.archive.choices()
    driven = await ctx.rt.live_text.driven(ids)  # live in another process, too
    read_only = ctx.web_token is None
    page = render(
        request,
        "index.html",
        runs=[_row(ctx, run, driven) for run in runs],
        hits=hits,
        f=f,
        models=models,
        used_templates=used_templates,
        next_before=ids[-1] if len(ids) == PAGE_SIZE else None,
        start_models=() if read_only else ctx.rt.registry.aliases(),
        start_templates={} if read_only else template_sizes(ctx),  # the start form's, only
        max_turns=ctx.rt.settings.chat_max_turns,
    )
    return sealed(page)


def sealed(page: Response) -> Page:
    """A rendered page's bytes and their ETag."""
    return Page(
        bytes(page.body), '"' + hashlib.blake2b(page.body, digest_size=12).hexdigest() + '"'
    )


def unless_unchanged(request: Request, page: Page) -> Response:
    """The page with an ETag of its bytes; an empty 304 to a browser that holds those bytes
    already (it asks again each time: no-cache), so an unchanged list is not sent again."""
    headers = {"etag": page.etag, "cache-control": "no-cache"}
    held = {
        c.strip().removeprefix("W/") for c in request.headers.get("if-none-match", "").split(",")
    }
    if page.etag in held or "*" in held:
        return Response(status_code=304, headers=headers)
    return HTMLResponse(page.body, headers=headers)


def _row(ctx: WebContext, run: RunRecord, driven: set[int]) -> dict[str, Any]:
    """A run of the list and its row's HTML, rendered once for what it shows: the record (cast,
    totals, end) and the status word. A new reply or an end makes a new record, so a new row."""
    state = _state(ctx, run, driven)

    def html() -> Markup:
        row = ctx.templates.get_template("_run_row.html")
        return Markup(
            row.render(
                run=run,
                state=state,
                classes=actor_classes(run.participants, ctx.rt.registry),
                tokens="?" if (total := costs.total_tokens(run)) is None else total,
                cost=costs.cost_cell(run),
            )
        )

    kept = ctx.rows.peek((run.id, state))
    # The archive gives back the same record for a run that reads as last time: `is` settles it
    # without comparing (or hashing) the whole record.
    if kept is not None and (kept[0] is run or kept[0] == run):
        return {"run": run, "html": kept[1]}
    made = html()
    ctx.rows.put((run.id, state), (run, made))
    return {"run": run, "html": made}


def _state(ctx: WebContext, run: RunRecord, driven: set[int]) -> str:
    """A short status word (ARCHITECTURE.md, run states): queued, live (running, driven here or
    by a process in `driven`), waiting (running, but no process holds its lease: it waits to be
    claimed), paused, or the end."""
    if run.status == "running":
        return "live" if ctx.broker.is_live(run.id) or run.id in driven else "waiting"
    if run.status in ("queued", "paused"):
        return run.status
    return end_label(run.end) if run.end else "ended"


def template_sizes(ctx: WebContext) -> dict[str, int]:
    sizes = {}
    for name, path in templates.available(ctx.rt.template_dirs).items():
        try:
            sizes[name] = templates.load(path).size
        except ConfigError:
            continue  # a broken template is reported when someone tries to start it
    return sizes


# -- one run ---------------------------------------------------------------------------------


async def run_page(request: Request) -> Response:
    ctx = web(request)
    run_id = request.path_params["run_id"]
    run = await ctx.rt.archive.get_run(run_id)  # UnknownRunError: 404 (see app.py)
    replies = await ctx.rt.archive.replies(run_id)
    state = _state(ctx, run, await ctx.rt.live_text.driven([run_id]))
    page = render(
        request,
        "run.html",
        run=run,
        state=state,
        live=state == "live",
        idle=idle_note(state, run.id),
        replies=[(reply, segments(reply.text)) for reply in replies],
        classes=actor_classes(run.participants, ctx.rt.registry),
        can_stop=state == "live" and ctx.web_token is not None,
        cost=costs.cost_text(run),
        saved=costs.caching_saved(run, replies, ctx.rt.manager.prices),
        usd=costs.usd,
    )
    return unless_unchanged(request, sealed(page))


async def download(request: Request) -> Response:
    ctx = web(request)
    run_id, fmt = request.path_params["run_id"], request.path_params["fmt"]
    if fmt not in export.FORMATS:
        formats = ", ".join(f".{name}" for name in export.FORMATS)
        return error(request, 404, f"There is no .{fmt} download; there are {formats}.")
    run = await ctx.rt.archive.get_run(run_id)
    text = export.render(run, await ctx.rt.archive.replies(run_id), fmt)
    # The text download is the BackroomsLogs file, so it keeps that file's upstream-style name.
    stem = _SAFE_NAME.sub("-", Path(run.log_path).stem) or f"backrooms-run-{run.id}"
    return Response(
        text.encode("utf-8"),
        media_type=MEDIA_TYPES[fmt],
        headers={"content-disposition": f'attachment; filename="{stem}.{fmt}"'},
    )


async def colours(request: Request) -> Response:
    css = colours_css(web(request).rt.registry)
    return Response(css, media_type="text/css", headers={"cache-control": "max-age=300"})


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "—"
