"""A deterministic, ever-growing stream of market news generated from templates.

Time is cut into 15-minute slots; each slot publishes one article whose content
is derived from (seed, slot), so any instance produces the same feed and new
articles appear as time passes.  Price moves quoted in headlines come from the
same price walk as market-data.
"""

import random
import re
from dataclasses import dataclass
from functools import lru_cache

from pydantic import BaseModel

from backends.catalog import INSTRUMENTS, Instrument
from backends.clock import DAY_SECONDS, day_start, iso_utc
from backends.determinism import stable_seed
from backends.price_walk import PriceWalk

SLOT_SECONDS = 900
# How far back a symbol filter searches before giving up on finding more articles.
LOOKBACK_SLOTS = 30 * DAY_SECONDS // SLOT_SECONDS

_SOURCES = (
    "MarketWire",
    "The Street Ledger",
    "Capital Markets Daily",
    "Equity Desk",
    "Trading Floor News",
)
_ANALYST_FIRMS = (
    "Harbor Point Securities",
    "Northgate Capital",
    "Bluewater Research",
    "Summit Ridge Partners",
)
_ANALYST_REASONS = ("margin trends", "demand visibility", "valuation", "the competitive landscape")
# Legal-name suffixes a headline writer would drop: "Apple Inc." -> "Apple".
_LEGAL_SUFFIX = re.compile(
    r"^The |,? Inc\.| Class [AB]$"
    r"|,? (Inc\.|Incorporated|Corporation|& Company|Company|& Co\.|and Company)"
)
_MARKET_HEADLINES = (
    (
        "Wall Street edges higher as Treasury yields ease",
        "Major indexes rose modestly as the 10-year yield slipped.",
    ),
    (
        "Stocks drift lower ahead of key inflation data",
        "Investors trimmed risk before this week's CPI report.",
    ),
    (
        "Fed officials signal patience on the path of rate cuts",
        "Policymakers said they want more evidence on inflation.",
    ),
    (
        "Oil prices climb on tighter supply outlook",
        "Crude rose after producers reaffirmed output restraint.",
    ),
    (
        "Dollar steadies as traders weigh jobs report",
        "Currency markets were calm after payrolls came in near forecasts.",
    ),
)
# (kind, relative frequency)
_KINDS = (
    ("move", 5),
    ("earnings", 2),
    ("analyst", 3),
    ("buyback", 1),
    ("sector", 2),
    ("market", 2),
)


class Article(BaseModel):
    """A news article as served by the news service."""

    article_id: str
    symbols: list[str]
    headline: str
    source: str
    url: str
    summary: str
    published_at: str


@dataclass(frozen=True, slots=True)
class _SlotPlan:
    """What a slot publishes, decided cheaply so filters can skip articles unrendered."""

    slot: int
    published_at: int
    kind: str
    symbols: tuple[str, ...]


class NewsFeed:
    """Renders the article stream for a seed."""

    def __init__(self, walk: PriceWalk) -> None:
        self._walk = walk
        instruments = list(INSTRUMENTS.values())
        self._instruments = instruments
        # Mega caps make the news more often than smaller names.
        self._weights = [instrument.average_daily_volume**0.3 for instrument in instruments]
        self._plan = lru_cache(maxsize=8_192)(self._plan_slot)
        self._article = lru_cache(maxsize=4_096)(self._render)

    def latest(self, now: int, limit: int, symbols: frozenset[str] = frozenset()) -> list[Article]:
        """Up to ``limit`` articles published by ``now``, newest first, optionally on symbols."""
        current = now // SLOT_SECONDS
        found: list[Article] = []
        for slot in range(current, current - LOOKBACK_SLOTS, -1):
            plan = self._plan(slot)
            if plan.published_at > now or (symbols and symbols.isdisjoint(plan.symbols)):
                continue
            found.append(self._article(plan))
            if len(found) == limit:
                break
        return found

    def _rng(self, slot: int) -> random.Random:
        return random.Random(stable_seed(self._walk.seed, "news", slot))

    def _plan_slot(self, slot: int) -> _SlotPlan:
        rng = self._rng(slot)
        published_at = slot * SLOT_SECONDS + rng.randrange(SLOT_SECONDS)
        kind = rng.choices([kind for kind, _ in _KINDS], weights=[weight for _, weight in _KINDS])[
            0
        ]
        if kind == "market":
            return _SlotPlan(slot, published_at, kind, ())
        subject = rng.choices(self._instruments, weights=self._weights)[0]
        symbols: tuple[str, ...] = (subject.symbol,)
        if kind == "sector":
            peers = [
                i.symbol
                for i in self._instruments
                if i.sector == subject.sector and i is not subject
            ]
            symbols = (subject.symbol, rng.choice(peers))
        return _SlotPlan(slot, published_at, kind, symbols)

    def _render(self, plan: _SlotPlan) -> Article:
        # A second generator, so rendering choices never disturb the plan's.
        rng = random.Random(stable_seed(self._walk.seed, "news-text", plan.slot))
        if plan.kind == "market":
            headline, summary = rng.choice(_MARKET_HEADLINES)
        else:
            instrument = INSTRUMENTS[plan.symbols[0]]
            headline, summary = self._story(plan, instrument, rng)
        source = rng.choice(_SOURCES)
        article_id = f"news_{stable_seed(self._walk.seed, 'article', plan.slot):016x}"[:17]
        return Article(
            article_id=article_id,
            symbols=list(plan.symbols),
            headline=headline,
            source=source,
            url=_article_url(source, headline, article_id, plan.published_at),
            summary=summary,
            published_at=iso_utc(plan.published_at),
        )

    def _story(
        self, plan: _SlotPlan, instrument: Instrument, rng: random.Random
    ) -> tuple[str, str]:
        name, symbol = headline_name(instrument), instrument.symbol
        price = self._walk.price(symbol, plan.published_at)
        prev_close = self._walk.price(symbol, day_start(plan.published_at) - 1)
        change_pct = (price / prev_close - 1) * 100
        if plan.kind == "move":
            if abs(change_pct) < 0.3:
                return (
                    f"{name} shares little changed as investors await fresh catalysts",
                    f"{symbol} traded near ${price:,.2f}, roughly flat against the previous "
                    f"close of ${prev_close:,.2f}.",
                )
            verb, reason = (
                (
                    "rise",
                    rng.choice(("on heavy volume", f"as {instrument.sector.lower()} stocks rally")),
                )
                if change_pct > 0
                else ("fall", rng.choice(("amid broader market weakness", "on profit-taking")))
            )
            return (
                f"{name} shares {verb} {abs(change_pct):.1f}% {reason}",
                f"{symbol} was at ${price:,.2f}, {'up' if change_pct > 0 else 'down'} "
                f"{abs(change_pct):.1f}% from the previous close of ${prev_close:,.2f}.",
            )
        if plan.kind == "earnings":
            growth = rng.randint(2, 24)
            estimate = round(rng.uniform(0.8, 6.5), 2)
            actual = round(estimate * rng.uniform(0.93, 1.12), 2)
            outcome = "tops" if actual >= estimate else "misses"
            return (
                f"{name} {outcome} quarterly profit estimates; revenue up {growth}%",
                f"{instrument.name} reported adjusted earnings of ${actual:.2f} per share versus "
                f"the consensus estimate of ${estimate:.2f}, on revenue {growth}% higher than a "
                "year earlier.",
            )
        if plan.kind == "analyst":
            firm = rng.choice(_ANALYST_FIRMS)
            raised = rng.random() < 0.65
            target = round(price * (rng.uniform(1.08, 1.3) if raised else rng.uniform(0.8, 0.97)))
            return (
                f"{firm} {'raises' if raised else 'cuts'} {symbol} price target to ${target}, "
                f"reiterates {'Buy' if raised else 'Hold'}",
                f"Analysts at {firm} {'see more upside' if raised else 'turned more cautious'} "
                f"on {name}, citing {rng.choice(_ANALYST_REASONS)}.",
            )
        if plan.kind == "buyback":
            billions = rng.choice((5, 10, 15, 20, 25, 50))
            return (
                f"{name} authorizes ${billions} billion share repurchase program",
                f"The board of {instrument.name} approved a new ${billions} billion buyback.",
            )
        peer = INSTRUMENTS[plan.symbols[1]]
        return (
            f"{instrument.sector} shares {'gain' if change_pct >= 0 else 'slip'} as {name} and "
            f"{headline_name(peer)} lead the group",
            f"{symbol} and {peer.symbol} were among the most active "
            f"{instrument.sector.lower()} names in the session.",
        )


def headline_name(instrument: Instrument) -> str:
    """The company name as a headline would print it, without legal suffixes."""
    return _LEGAL_SUFFIX.sub("", instrument.name).strip()


def _article_url(source: str, headline: str, article_id: str, published_at: int) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", headline.lower()).strip("-")[:80]
    source_slug = re.sub(r"[^a-z0-9]+", "-", source.lower()).strip("-")
    date_path = iso_utc(published_at)[:10].replace("-", "/")
    return f"https://news.example.com/{source_slug}/{date_path}/{slug}-{article_id.removeprefix('news_')}"
