"""The platform's trading bots: their definitions, run state and simulated daily results."""

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from backends.clock import day_start, iso_utc
from backends.determinism import stable_seed, unit_float
from backends.price_walk import PriceWalk

Strategy = Literal["mean_reversion", "momentum", "grid", "dca"]
BotStatus = Literal["running", "stopped", "error"]

# How each strategy's P&L tracks the market (signed share of the allocation exposed)
# and how often it trades.  Grids harvest oscillation, so their P&L ignores direction.
_EXPOSURE: dict[Strategy, float] = {
    "momentum": 0.9,
    "mean_reversion": -0.6,
    "grid": 0.25,
    "dca": 1.0,
}
_SECONDS_PER_TRADE: dict[Strategy, int] = {
    "momentum": 1_200,
    "mean_reversion": 900,
    "grid": 300,
    "dca": 14_400,
}


@dataclass(frozen=True, slots=True)
class BotDefinition:
    """A bot as configured by its owner."""

    bot_id: str
    account_id: str
    name: str
    strategy: Strategy
    symbols: tuple[str, ...]
    allocation: float
    initial_status: BotStatus


_DEMO_BOTS = (
    BotDefinition(
        bot_id="bot_mr_aapl_msft",
        account_id="ACC-1001",
        name="Mega-cap Mean Reversion",
        strategy="mean_reversion",
        symbols=("AAPL", "MSFT"),
        allocation=20_000,
        initial_status="running",
    ),
    BotDefinition(
        bot_id="bot_mom_semis",
        account_id="ACC-1001",
        name="Semiconductor Momentum",
        strategy="momentum",
        symbols=("NVDA", "AMD", "AVGO"),
        allocation=30_000,
        initial_status="running",
    ),
    BotDefinition(
        bot_id="bot_grid_tsla",
        account_id="ACC-1001",
        name="TSLA Range Grid",
        strategy="grid",
        symbols=("TSLA",),
        allocation=10_000,
        initial_status="stopped",
    ),
    BotDefinition(
        bot_id="bot_dca_leaders",
        account_id="ACC-1001",
        name="Weekly DCA Leaders",
        strategy="dca",
        symbols=("MSFT", "GOOGL", "AMZN"),
        allocation=5_000,
        initial_status="error",
    ),
    BotDefinition(
        bot_id="bot_dca_dividends",
        account_id="ACC-1002",
        name="Dividend DCA",
        strategy="dca",
        symbols=("KO", "PG", "PEP"),
        allocation=2_000,
        initial_status="stopped",
    ),
    BotDefinition(
        bot_id="bot_mom_tsla",
        account_id="ACC-1002",
        name="TSLA Momentum",
        strategy="momentum",
        symbols=("TSLA",),
        allocation=4_000,
        initial_status="running",
    ),
    BotDefinition(
        bot_id="bot_grid_banks",
        account_id="ACC-2001",
        name="Money-center Banks Grid",
        strategy="grid",
        symbols=("JPM", "BAC", "WFC"),
        allocation=25_000,
        initial_status="running",
    ),
    BotDefinition(
        bot_id="bot_mom_ai",
        account_id="ACC-2002",
        name="AI Leaders Momentum",
        strategy="momentum",
        symbols=("NVDA", "META"),
        allocation=60_000,
        initial_status="running",
    ),
)


class Bot(BaseModel):
    """A bot's public state."""

    bot_id: str
    name: str
    strategy: Strategy
    status: BotStatus
    symbols: list[str]
    pnl_today: float
    trades_today: int
    started_at: str | None


class BotNotFound(LookupError):
    """No such bot in this account."""


@dataclass(slots=True)
class _RunState:
    status: BotStatus
    started_at: float | None
    # Results already realised today by earlier runs; reset when the UTC day changes.
    banked_day: int
    banked_pnl: float = 0.0
    banked_trades: int = 0


class BotFleet:
    """Runs (simulates) every demo bot; P&L follows the shared price walk."""

    def __init__(self, walk: PriceWalk, clock: Callable[[], float] = time.time) -> None:
        self._walk = walk
        self._clock = clock
        self._definitions = {bot.bot_id: bot for bot in _DEMO_BOTS}
        now = clock()
        self._states: dict[str, _RunState] = {}
        for bot in _DEMO_BOTS:
            # Running bots were started a few hours to a day and a half ago.
            hours_ago = 2 + 34 * unit_float(stable_seed(walk.seed, "bot-start", bot.bot_id))
            started = now - hours_ago * 3_600 if bot.initial_status == "running" else None
            self._states[bot.bot_id] = _RunState(
                bot.initial_status, started, banked_day=day_start(int(now))
            )

    def bots(self, account_id: str) -> list[Bot]:
        """All bots of an account (an account without bots gets an empty list)."""
        return [
            self._view(bot) for bot in self._definitions.values() if bot.account_id == account_id
        ]

    def bot(self, account_id: str, bot_id: str) -> Bot:
        """One bot of an account."""
        return self._view(self._definition(account_id, bot_id))

    def start(self, account_id: str, bot_id: str) -> Bot:
        """Start a bot; starting a running bot changes nothing."""
        bot = self._definition(account_id, bot_id)
        state = self._states[bot_id]
        if state.status != "running":
            state.status, state.started_at = "running", self._clock()
        return self._view(bot)

    def stop(self, account_id: str, bot_id: str) -> Bot:
        """Stop a bot, banking what it made today; stopping a stopped bot changes nothing."""
        bot = self._definition(account_id, bot_id)
        state = self._states[bot_id]
        if state.status == "running":
            now = int(self._clock())
            pnl, trades = self._results_today(bot, state, now)
            state.banked_pnl, state.banked_trades = pnl, trades
        state.status, state.started_at = "stopped", None
        return self._view(bot)

    def _definition(self, account_id: str, bot_id: str) -> BotDefinition:
        bot = self._definitions.get(bot_id)
        if bot is None or bot.account_id != account_id:
            raise BotNotFound(f"Bot {bot_id} not found in account {account_id}")
        return bot

    def _view(self, bot: BotDefinition) -> Bot:
        state = self._states[bot.bot_id]
        pnl, trades = self._results_today(bot, state, int(self._clock()))
        return Bot(
            bot_id=bot.bot_id,
            name=bot.name,
            strategy=bot.strategy,
            status=state.status,
            symbols=list(bot.symbols),
            pnl_today=round(pnl, 2),
            trades_today=trades,
            started_at=None if state.started_at is None else iso_utc(state.started_at),
        )

    def _results_today(self, bot: BotDefinition, state: _RunState, now: int) -> tuple[float, int]:
        today = day_start(now)
        if state.banked_day != today:
            state.banked_day, state.banked_pnl, state.banked_trades = today, 0.0, 0
        if state.status != "running" or state.started_at is None:
            return state.banked_pnl, state.banked_trades
        since = max(int(state.started_at), today)
        returns = [self._walk.price(s, now) / self._walk.price(s, since) - 1 for s in bot.symbols]
        market_move = sum(returns) / len(returns)
        if bot.strategy == "grid":
            market_move = abs(market_move)
        live_pnl = bot.allocation * _EXPOSURE[bot.strategy] * market_move
        live_trades = (now - since) // _SECONDS_PER_TRADE[bot.strategy]
        return state.banked_pnl + live_pnl, state.banked_trades + live_trades
