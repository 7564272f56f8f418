"""The Telegram bot inside ``openclaw serve``: wiring, long polling with a watchdog, webhook.

Several instances may share one database; one of them leads. ``start`` plugs every
instance into the app; ``lead`` and ``follow`` switch what it does with Telegram itself:
only the leader polls, registers the commands and sets (or deletes) the webhook, while in
webhook mode every instance serves the webhook behind the load balancer."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.exceptions import TelegramAPIError, TelegramNetworkError
from aiogram.filters import ExceptionTypeFilter
from aiogram.methods import GetUpdates, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import BotCommand, BotCommandScopeChat, BotCommandScopeDefault, ErrorEvent
from aiohttp import web

from bot.answering import AnswerEveryPress
from bot.channel import TelegramChannel
from bot.middlewares import AccessMiddleware, PolledOnce
from bot.reporter import RunReporter
from bot.routers.agents import make_agents_router
from bot.routers.approvals import ApprovalMessages, make_approvals_router
from bot.routers.ask import make_ask_router
from bot.routers.budget import make_budget_router
from bot.routers.deliveries import UnknownCards, make_deliveries_router
from bot.routers.drills import make_drills_router
from bot.routers.memory import make_memory_router
from bot.routers.runs import UsageError, make_runs_router
from bot.routers.schedule import make_schedule_router
from bot.routers.start import make_start_router
from bot.routers.status import make_status_router
from bot.routers.tune import make_tune_router
from bot.routers.usage import make_usage_router
from bot.sending import PartialSend, SendPath, describe, send_parts
from bot.views import ADMIN_COMMANDS, READ_ONLY
from core.errors import StoreUnavailable
from core.facade import Facade
from core.waits import within

log = logging.getLogger("openclaw.bot")
WEBHOOK_PATH = "/telegram/webhook"
STOP_POLLING_S = 5.0  # aiogram's stop cancels a long poll at once; this bounds a stuck one
PRUNE_EVERY_S = 3600.0  # webhook update records live 24 h; an hourly sweep keeps the table small


class PollWatch(BaseRequestMiddleware):
    """Notes when each getUpdates starts and ends, for the watchdog; refuses every call
    once the bot stopped (aiogram would open a new session for it that nobody closes)."""

    def __init__(self) -> None:
        self.started: float | None = None  # the getUpdates in flight, if any
        self.last_ok: float | None = None
        self.stopped = False

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Any:
        if self.stopped:  # e.g. closing the copies of an approval that shutdown abandoned
            raise TelegramNetworkError(method, "the bot is stopped")
        polling = isinstance(method, GetUpdates)  # a flag: the call keeps method's type
        if not polling:
            return await make_request(bot, method)
        self.started = time.monotonic()
        try:
            result = await make_request(bot, method)
            self.last_ok = time.monotonic()
            return result
        finally:
            self.started = None


async def _usage_error(event: ErrorEvent, bot: Bot) -> None:
    """Commands with wrong arguments answer with their usage."""
    message = event.update.message
    if message is not None:
        await send_parts(bot, message.chat.id, str(event.exception))


async def _send_failed(event: ErrorEvent, bot: Bot) -> None:
    """A reply Telegram refused even after the send path's waits and retries: one log
    line, no traceback (the handler's work, e.g. a run, is done or going on)."""
    e = event.exception
    cause = e.cause if isinstance(e, PartialSend) else e
    assert isinstance(cause, TelegramAPIError)
    log.warning("Telegram: a reply was not sent: %s", describe(bot, cause))


class TelegramBot:
    """The bot: routers per feature, access middleware, the outbox channel, approvals."""

    def __init__(self, facade: Facade, token: str, api_base: str | None = None) -> None:
        self.facade = facade
        self.config = facade.config
        cfg = facade.config.telegram
        session = (
            AiohttpSession(api=TelegramAPIServer.from_base(api_base))
            if api_base
            else (AiohttpSession())
        )
        self.bot = Bot(
            token,
            session=session,
            default=DefaultBotProperties(parse_mode=ParseMode.HTML, link_preview_is_disabled=True),
        )
        self.watch = PollWatch()
        self.bot.session.middleware(self.watch)
        # every send and edit of the bot (replies, digests, approvals) is paced, ordered
        # and retried here, with one set of budgets
        self.send_path = SendPath.of(self.bot)
        self.reporter = RunReporter(facade.runner, self.bot)
        self.approvals = ApprovalMessages(self.bot, cfg.admins, self.reporter)
        self.unknown_cards = UnknownCards(self.bot, cfg.admins)
        self.dp = Dispatcher(facade=facade, reporter=self.reporter, started_at=time.monotonic())
        self.dp.update.outer_middleware(AccessMiddleware(cfg))
        self.dp.callback_query.outer_middleware(AnswerEveryPress())
        self.dp.include_routers(
            make_start_router(),
            make_agents_router(),
            make_runs_router(),
            make_usage_router(),
            make_schedule_router(),
            make_tune_router(),
            make_status_router(),
            make_approvals_router(),
            make_budget_router(),
            make_deliveries_router(),
            make_memory_router(),
            make_drills_router(),
            make_ask_router(),  # last: plain text is whatever no command took
        )
        self.dp.errors.register(_usage_error, ExceptionTypeFilter(UsageError))
        self.dp.errors.register(_send_failed, ExceptionTypeFilter(TelegramAPIError, PartialSend))
        self.mode = "webhook" if cfg.webhook_url else "polling"
        if self.mode == "polling" and facade.updates.shared:
            self.dp.update.outer_middleware(PolledOnce(facade.updates))
        self.state = "starting"
        self.leading = False
        self.reconnects = 0
        self._polling: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._pruning: asyncio.Task[None] | None = None
        self._role = asyncio.Lock()  # lead and follow one at a time, each to its end
        self._secret: str | None = None
        self._store_down = False  # the webhook's last record of an update failed
        self._webhook_tasks: set[asyncio.Task[Any]] = set()

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Plug into the app (channel, approvals, progress, status); in webhook mode read the
        secret, so that every instance can serve the webhook. Talks to Telegram only to send:
        polling, commands and the webhook setting wait for :meth:`lead`."""
        self.watch.stopped = False
        self.facade.add_channel("telegram", TelegramChannel(self.bot))
        # the broker sends and closes the cards on the leader only; watch is this one's
        self.facade.set_approval_notifier(self.approvals.notify, self.approvals.close)
        self.facade.watch_approvals(self.approvals.watch)
        # called by the delivery worker on the leader only (see Deliveries.ask)
        self.facade.set_unknown_notifier(self.unknown_cards.notify)
        self.facade.add_attempt_observer(self.reporter.observe)
        self.facade.add_step_observer(self.reporter.observe_step)
        self.facade.add_status_hook("telegram", self.status)
        if self.mode == "webhook":
            cfg = self.config.telegram
            secret = self.facade.settings.secret(cfg.webhook_secret_env)
            if secret is None:
                raise RuntimeError(
                    f"webhook mode needs {cfg.webhook_secret_env} (a random "
                    "string Telegram sends back with every update)"
                )
            self._secret = secret.get_secret_value()
        self.state = self._follower_state()

    async def lead(self) -> None:
        """This instance leads: register the commands, then poll with the watchdog (after
        deleteWebhook), or set the webhook and prune the update records hourly. Idempotent;
        Telegram being down is logged, never raised (polling retries on its own)."""
        async with self._role:
            if self.leading:
                return
            self.leading = True
            try:
                await self._register_commands()
            except Exception as e:  # Telegram down at boot must not take serve down with it
                log.warning("Telegram: could not register commands (%s); going on", e)
            if self.mode == "webhook":
                await self._set_webhook()
                self._pruning = asyncio.create_task(self._prune())
                return
            if self.facade.updates.shared:  # the polled updates' records, as the webhook's
                self._pruning = asyncio.create_task(self._prune())
            try:
                await self.bot.delete_webhook(drop_pending_updates=False)
            except Exception as e:  # polling retries with backoff on its own
                log.warning("Telegram: deleteWebhook failed (%s); polling anyway", e)
            self._start_polling()
            self._watchdog = asyncio.create_task(self._watch())

    async def follow(self) -> None:
        """Another instance leads: stop polling, the watchdog and the pruning; when this
        returns no getUpdates is in flight or will be sent. Never touches the webhook
        setting (the leader owns it); in webhook mode the webhook is still served.
        Idempotent, and :meth:`lead` may follow it again."""
        async with self._role:
            await self._stand_down()
            self.leading = False
            self.state = self._follower_state()

    def _follower_state(self) -> str:
        if self.mode == "webhook":
            return "ok, follower (serving the webhook; the leader sets it)"
        return "follower (the leader polls)"

    async def _set_webhook(self) -> None:
        cfg = self.config.telegram
        assert cfg.webhook_url is not None and self._secret is not None
        try:
            await self.bot.set_webhook(
                cfg.webhook_url, secret_token=self._secret, drop_pending_updates=False
            )
            self.state = "ok"
        except Exception as e:
            self.state = f"webhook not set: {e}"
            log.error("Telegram: could not set the webhook: %s", e)

    async def _prune(self) -> None:
        """Forget webhook updates Telegram can no longer redeliver, now and every hour."""
        while True:
            try:
                await self.facade.updates.prune()
            except Exception as e:  # the next sweep tries again; the handler is not blocked
                log.warning("Telegram: could not prune the webhook update records (%s)", e)
            await asyncio.sleep(PRUNE_EVERY_S)

    async def _stand_down(self) -> None:
        """Cancel the watchdog first (it restarts polling), then stop polling and pruning."""
        tasks = [t for t in (self._watchdog, self._pruning) if t is not None]
        self._watchdog = self._pruning = None
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._stop_polling()

    async def _register_commands(self) -> None:
        everyone = [
            BotCommand(command=c, description=d) for c, d in ADMIN_COMMANDS if c in READ_ONLY
        ]
        admins = [BotCommand(command=c, description=d) for c, d in ADMIN_COMMANDS]
        await self.bot.set_my_commands(everyone, scope=BotCommandScopeDefault())
        for admin in self.config.telegram.admins:
            with contextlib.suppress(Exception):  # an admin who never opened the bot
                await self.bot.set_my_commands(admins, scope=BotCommandScopeChat(chat_id=admin))

    def _start_polling(self) -> None:
        timeout = self.config.telegram.polling_timeout_s
        self._polling = asyncio.create_task(
            self.dp.start_polling(
                self.bot, polling_timeout=timeout, handle_signals=False, close_bot_session=False
            )
        )
        self.state = "ok"

    async def _watch(self) -> None:
        """getUpdates silent for longer than its timeout plus a margin, or the polling task
        gone (aiogram ends it when getMe fails at start): reconnect."""
        cfg = self.config.telegram
        limit = cfg.polling_timeout_s + cfg.watchdog_margin_s
        while True:
            await asyncio.sleep(min(5.0, limit / 4))
            try:
                started = self.watch.started
                stalled = started is not None and time.monotonic() - started > limit
                dead = self._polling is not None and self._polling.done()
                if not (stalled or dead):
                    continue
                self.state = "stalled, reconnecting" if stalled else "polling ended, restarting"
                self.reconnects += 1
                log.warning("Telegram: %s", self.state)
                await self._stop_polling()
                await self.bot.session.close()  # drop a stuck connection; a new one opens
                self.watch.started = None
                self._start_polling()
            except Exception:  # the watchdog itself must not die
                log.exception("Telegram watchdog")

    async def _stop_polling(self) -> None:
        """End polling through aiogram's own stop: it cancels its poller and waits for it.

        Cancelling the ``start_polling`` task instead leaves aiogram's inner poller task
        running: it keeps polling on the side, and once the session or the API is gone it
        logs "Failed to fetch updates" as an ERROR every backoff step.
        """
        task, self._polling = self._polling, None
        if task is None or task.done():
            return
        with contextlib.suppress(RuntimeError, TimeoutError):  # not polling yet; stuck
            await within(self.dp.stop_polling(), STOP_POLLING_S)
        if not task.done():  # before polling began (getMe), or stuck: nothing inner yet
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    async def stop(self) -> None:
        """Stop polling (leader or not), reporting and the session."""
        async with self._role:
            await self._stand_down()
            self.leading = False
        await self.reporter.close()
        await self.facade.approvals.drain()  # copies being sent or closed use the session
        self.watch.stopped = True
        await self.bot.session.close()
        self.state = "stopped"

    def routes(self) -> dict[str, Any]:
        """The webhook endpoint, in webhook mode."""
        return {WEBHOOK_PATH: self.webhook_handler()} if self.mode == "webhook" else {}

    def summary(self) -> str:
        """The start-up line."""
        cfg = self.config.telegram
        return (
            f"Telegram bot: on ({self.mode}), {len(cfg.admins)} admins, "
            f"{len(cfg.allowed_users)} more allowed users"
        )

    def status(self) -> dict[str, Any]:
        """For /api/status and /readyz."""
        last = self.watch.last_ok
        return {
            "mode": self.mode,
            "role": "leader" if self.leading else "follower",
            "state": self.state,
            "reconnects": self.reconnects,
            "last_poll_s_ago": round(time.monotonic() - last, 1) if last else None,
        }

    # -- webhook ------------------------------------------------------------------------

    def webhook_handler(self) -> Callable[[web.Request], Awaitable[web.Response]]:
        """The aiohttp handler the gateway mounts at /telegram/webhook."""

        async def handle(request: web.Request) -> web.Response:
            given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
            if self._secret is None or not hmac.compare_digest(
                given.encode("utf-8", "surrogateescape"), self._secret.encode()
            ):
                return web.json_response({"ok": False}, status=401)
            try:
                update = await request.json()
            except ValueError:
                return web.json_response({"ok": False, "error": "not JSON"}, status=400)
            update_id = update.get("update_id") if isinstance(update, dict) else None
            if not isinstance(update_id, int) or isinstance(update_id, bool):
                return web.json_response({"ok": False, "error": "no integer update_id"}, status=400)
            # recorded (committed) before the 200: a redelivery, to this instance or another
            # behind the load balancer, is answered and dropped
            try:
                first = await self.facade.updates.first_time(update_id)
            except StoreUnavailable as e:
                if not self._store_down:  # one line per outage; Telegram retries each update
                    log.warning(
                        "Telegram: webhook updates cannot be recorded (%s); answering 503 "
                        "(Telegram delivers them again) until they can",
                        e,
                    )
                self._store_down = True
                return web.json_response({"ok": False, "error": "try again"}, status=503)
            if self._store_down:
                self._store_down = False
                log.info("Telegram: webhook updates are recorded again")
            if not first:
                return web.json_response({"ok": True})
            # answer Telegram at once; the handlers run on their own
            task: asyncio.Task[Any] = asyncio.create_task(
                self.dp.feed_webhook_update(self.bot, update)
            )
            self._webhook_tasks.add(task)
            task.add_done_callback(self._webhook_tasks.discard)
            return web.json_response({"ok": True})

        return handle
