"""``ecm desk``: the duty desk's board, one page served by aiohttp.

It reads every partition of ``ecm.escalations`` from the beginning (the latest snapshot of
each case wins) and the refusals of actions on ``ecm.deadletter``, and writes the desk's
decisions to ``ecm.actions``, keyed by client. It runs apart from the workers. The page is
rendered on the server (Jinja2) and kept live by server-sent events that htmx's sse
extension swaps in (both vendored in ``static/``): the open cases of the page's filters, at
most one render a quarter second, only when something changed. Countdowns tick in the
browser. Nobody may read or act without signing in (stream/desk/auth.py).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape

from stream.contract.actions import action_checked
from stream.contract.bounds import Bounds
from stream.contract.checks import Invalid
from stream.contract.records import (
    ESCALATION_KINDS,
    OUTCOME_CODES,
    RECOVERY_CODES,
    VALIDATION_STATUSES,
)
from stream.desk.auth import SESSION_COOKIE, Users
from stream.desk.board import Board, Filters
from stream.security import connection
from stream.settings import Settings
from stream.timeutil import format_instant
from stream.topics import partition_for

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
_RENDER_EVERY_S = 0.25
_OPEN = ("/login", "/static/", "/healthz")
_PRUNE_EVERY_S = 600.0
_RENDERED_MAX = 256  # filter sets whose rows are kept rendered
STAGES = ("open", "acknowledged", "recovery_assigned", "recovery_completed")


class Desk:
    def __init__(self, settings: Settings, users: Users) -> None:
        self.settings = settings
        self.users = users
        self.board = Board()
        self.bounds = Bounds.from_settings(settings)
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"),
                               autoescape=select_autoescape(["html"]))
        self.producer: Any = None
        self.tasks: list[asyncio.Task[None]] = []
        self.ready = asyncio.Event()  # once both topics were read to their ends
        self._rendered: dict[Filters, tuple[int, str]] = {}  # filters -> (version, rows)

    # ---- the app ---------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._signed_in])
        app.add_routes([
            web.get("/", self.page), web.get("/events", self.events),
            web.get("/closed", self.closed), web.get("/act/{eid}", self.act_forms),
            web.get("/case/{eid}", self.case), web.post("/actions", self.act),
            web.get("/login", self.login_page), web.post("/login", self.login),
            web.post("/logout", self.logout), web.get("/healthz", self.healthz),
            web.static("/static", HERE / "static")])
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    @web.middleware
    async def _signed_in(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith(_OPEN):
            return await handler(request)
        user = self.users.user(request.cookies.get(SESSION_COOKIE))
        if user is None:
            if request.method == "GET" and request.path == "/":
                raise web.HTTPFound("/login")
            raise web.HTTPUnauthorized(text="sign in first")
        request["user"] = user
        return await handler(request)

    async def _start(self, app: web.Application) -> None:
        from aiokafka import AIOKafkaProducer

        self.producer = AIOKafkaProducer(**connection(self.settings),
                                         acks="all")
        await self.producer.start()
        self.tasks.append(asyncio.create_task(self._follow()))

    async def _stop(self, app: web.Application) -> None:
        for t in self.tasks:
            t.cancel()
        if self.producer is not None:
            await self.producer.stop()

    # ---- reading the topics ------------------------------------------------------------------

    async def _follow(self) -> None:
        """Read both topics for as long as the board runs; a failure is logged and the
        reading starts again (the board's records are replaced, never doubled)."""
        while True:
            try:
                await self._read()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reading the escalation and dead-letter topics failed; again "
                              "in 2 s")
                await asyncio.sleep(2.0)

    async def _read(self) -> None:
        """Read both topics from the beginning, then as they grow."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        s = self.settings
        # A fetch waits at most ECM_FETCH_MAX_WAIT_MS for data, as the workers' do: at
        # aiokafka's default (500 ms) a new case reached the page half a second later.
        consumer = AIOKafkaConsumer(**connection(s), group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    fetch_max_wait_ms=s.fetch_max_wait_ms)
        await consumer.start()
        try:
            await consumer.topics()  # the cluster's metadata, so that partitions are known
            parts = [TopicPartition(t, p) for t in (s.topic_escalations, s.topic_deadletter)
                     for p in sorted(consumer.partitions_for_topic(t) or ())]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            ends = await consumer.end_offsets(parts)
            pruned = time.monotonic()
            while True:
                if time.monotonic() - pruned > _PRUNE_EVERY_S:
                    pruned = time.monotonic()
                    self.board.prune(time.time())
                batch = await consumer.getmany(timeout_ms=500, max_records=5000)
                for tp, messages in batch.items():
                    for m in messages:
                        self._take(tp.topic, m.value)
                if not self.ready.is_set():
                    positions = [await consumer.position(tp) for tp in parts]
                    if all(at >= ends[tp] for at, tp in zip(positions, parts, strict=True)):
                        self.ready.set()
        finally:
            await consumer.stop()

    def _take(self, topic: str, value: bytes | None) -> None:
        if value is None:
            return
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            return
        if topic == self.settings.topic_escalations:
            if isinstance(doc, dict):
                self.board.apply(doc)
            return
        try:  # a dead letter: the board shows the refusals of actions
            raw = orjson.loads(base64.b64decode(doc.get("raw") or ""))
        except (ValueError, AttributeError, orjson.JSONDecodeError):
            return
        if isinstance(raw, dict) and "action_id" in raw:
            self.board.refused(raw, str(doc.get("reason")), str(doc.get("detail")),
                               str(doc.get("rejected_at")))

    # ---- the page ----------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.Response:
        f = Filters.from_query(request.query)
        now = time.time()
        rows, total = self.board.open_rows(f, now)
        html = self.env.get_template("board.html").render(
            user=request["user"], rows=rows, total=total, f=f, counts=self.board.counts(),
            closed_n=self.board.closed_count(now), closed=[], kinds=ESCALATION_KINDS,
            stages=STAGES, query=request.query_string, page_size=100)
        return web.Response(text=html, content_type="text/html")

    async def closed(self, request: web.Request) -> web.Response:
        html = self.env.get_template("closed.html").render(
            closed=self.board.closed_today(time.time()))
        return web.Response(text=html, content_type="text/html")

    def _rows(self, f: Filters) -> str:
        """The rows of a page's filters, rendered once per change of the board whatever
        the number of pages open with them."""
        version = self.board.version
        held = self._rendered.get(f)
        if held is not None and held[0] == version:
            return held[1]
        rows, total = self.board.open_rows(f, time.time())
        html = self.env.get_template("rows.html").render(rows=rows, total=total, f=f)
        if len(self._rendered) >= _RENDERED_MAX:
            self._rendered.clear()
        self._rendered[f] = (version, html)
        return html

    def _counts(self) -> str:
        return self.env.get_template("counts.html").render(
            counts=self.board.counts(), closed_n=self.board.closed_count(time.time()))

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: the rows of the page's filters whenever the board changes."""
        f = Filters.from_query(request.query)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
        await resp.prepare(request)
        sent = -1
        try:
            while True:
                version = self.board.version
                if version != sent:
                    sent = version
                    await resp.write(_event("rows", self._rows(f)) +
                                     _event("counts", self._counts()))
                await asyncio.sleep(_RENDER_EVERY_S)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return resp

    async def act_forms(self, request: web.Request) -> web.Response:
        """A row's action forms, fetched when its "Act" is opened: a live update then
        swaps a hundred light rows, not a hundred rows of forms."""
        eid = request.match_info["eid"]
        if eid not in self.board.cases:
            raise web.HTTPNotFound(text="no such case")
        html = self.env.get_template("act.html").render(
            eid=eid, codes=RECOVERY_CODES, outcomes=OUTCOME_CODES,
            validations=VALIDATION_STATUSES)
        return web.Response(text=html, content_type="text/html")

    async def case(self, request: web.Request) -> web.Response:
        r = self.board.cases.get(request.match_info["eid"])
        if r is None:
            raise web.HTTPNotFound(text="no such case")
        html = self.env.get_template("history.html").render(r=r)
        return web.Response(text=html, content_type="text/html")

    # ---- acting ------------------------------------------------------------------------------

    async def act(self, request: web.Request) -> web.Response:
        form = await request.post()
        eid = str(form.get("escalation_id", ""))
        record = self.board.cases.get(eid)
        if record is None:
            return _note("no such case")
        doc: dict[str, Any] = {
            "action_id": f"desk-{uuid.uuid4()}", "escalation_id": eid,
            "client_id": record["client_id"], "type": str(form.get("type", "")),
            "at": format_instant(time.time()), "by": request["user"]}
        for name in ("owner_id", "recovery_action_code", "assigned_worker_id", "action_type",
                     "reviewer_id", "service_outcome", "member_condition",
                     "validation_status", "final_outcome_code", "note"):
            value = str(form.get(name, "")).strip()
            if value:
                doc[name] = value
        minutes = str(form.get("recovery_minutes", "")).strip()
        if minutes:
            try:
                doc["recovery_deadline"] = format_instant(time.time() + 60 * float(minutes))
            except ValueError:
                return _note("the recovery deadline is minutes from now, a number")
        try:
            action_checked(doc, self.bounds)
        except Invalid as exc:
            return _note(f"not sent: {exc.detail}")
        p = partition_for(doc["client_id"], self.settings.partitions)
        await self.producer.send_and_wait(self.settings.topic_actions, orjson.dumps(doc),
                                          key=doc["client_id"].encode(), partition=p)
        return _note(f"sent: {doc['type']}")

    # ---- signing in --------------------------------------------------------------------------

    async def login_page(self, request: web.Request) -> web.Response:
        html = self.env.get_template("login.html").render(failed=False)
        return web.Response(text=html, content_type="text/html")

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        session = self.users.sign_in(str(form.get("user", "")), str(form.get("token", "")))
        if session is None:
            html = self.env.get_template("login.html").render(failed=True)
            return web.Response(text=html, content_type="text/html", status=401)
        resp = web.HTTPFound("/")
        resp.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="Strict")
        raise resp

    async def logout(self, request: web.Request) -> web.Response:
        self.users.sign_out(request.cookies.get(SESSION_COOKIE))
        resp = web.HTTPFound("/login")
        resp.del_cookie(SESSION_COOKIE)
        raise resp

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "read": self.ready.is_set()})


def _event(name: str, html: str) -> bytes:
    data = "".join(f"data: {line}\n" for line in html.splitlines())
    return f"event: {name}\n{data}\n".encode()


def _note(text: str) -> web.Response:
    # Always 200: htmx swaps a 2xx answer only, and the row shows a refusal as a note.
    return web.Response(text=f'<span class="note">{_escape(text)}</span>',
                        content_type="text/html")


def _escape(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def run(settings: Settings) -> int:
    users = Users.from_settings(settings)
    if not users:
        print("no users: set ECM_DESK_TOKENS (user:token,...) or ECM_DESK_TOKENS_FILE")
        return 2
    desk = Desk(settings, users)
    print(f"the duty desk's board: http://{settings.desk_host}:{settings.desk_port}/",
          flush=True)
    # Live pages hold a connection each: shutting down does not wait for them to end.
    web.run_app(desk.app(), host=settings.desk_host, port=settings.desk_port,
                print=None, access_log=None, shutdown_timeout=1.0)
    return 0
