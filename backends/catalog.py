"""Reference data shared by the simulated services: listed instruments and demo accounts."""

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Instrument:
    """A listed US equity with the parameters that drive its simulated price."""

    symbol: str
    name: str
    exchange: str
    sector: str
    base_price: float
    average_daily_volume: int
    # Scales the random walk: 1.0 is a typical large cap, TSLA-like names run hotter.
    volatility: float
    currency: str = "USD"


@dataclass(frozen=True, slots=True)
class Holding:
    """A position held at the start of the simulation."""

    symbol: str
    quantity: int | float
    average_cost: float


@dataclass(frozen=True, slots=True)
class Watchlist:
    """A named list of symbols a user follows."""

    watchlist_id: str
    name: str
    symbols: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DemoAccount:
    """A brokerage account with its opening cash, holdings and watchlists."""

    account_id: str
    owner: str
    cash: float
    margin: bool
    holdings: tuple[Holding, ...]
    watchlists: tuple[Watchlist, ...] = field(default=())
    currency: str = "USD"

    @property
    def buying_power(self) -> float:
        """Margin accounts get 2x leverage (Reg T); cash accounts can spend only their cash."""
        return self.cash * 2 if self.margin else self.cash


# sector -> (symbol, name, exchange, base price, average daily volume, volatility)
_LISTINGS: dict[str, tuple[tuple[str, str, str, float, int, float], ...]] = {
    "Technology": (
        ("AAPL", "Apple Inc.", "NASDAQ", 228.50, 55_000_000, 1.0),
        ("MSFT", "Microsoft Corporation", "NASDAQ", 415.20, 20_000_000, 1.0),
        ("NVDA", "NVIDIA Corporation", "NASDAQ", 135.40, 250_000_000, 1.6),
        ("AVGO", "Broadcom Inc.", "NASDAQ", 171.30, 25_000_000, 1.4),
        ("AMD", "Advanced Micro Devices, Inc.", "NASDAQ", 141.80, 40_000_000, 1.6),
        ("ADBE", "Adobe Inc.", "NASDAQ", 498.60, 3_000_000, 1.0),
        ("INTC", "Intel Corporation", "NASDAQ", 22.40, 60_000_000, 1.4),
        ("CSCO", "Cisco Systems, Inc.", "NASDAQ", 57.30, 18_000_000, 0.8),
        ("QCOM", "QUALCOMM Incorporated", "NASDAQ", 164.90, 8_000_000, 1.2),
        ("ORCL", "Oracle Corporation", "NYSE", 171.10, 9_000_000, 1.2),
        ("CRM", "Salesforce, Inc.", "NYSE", 291.70, 6_000_000, 1.0),
        ("IBM", "International Business Machines Corporation", "NYSE", 214.80, 4_000_000, 0.8),
    ),
    "Communication Services": (
        ("GOOGL", "Alphabet Inc. Class A", "NASDAQ", 170.60, 25_000_000, 1.0),
        ("META", "Meta Platforms, Inc.", "NASDAQ", 561.90, 13_000_000, 1.3),
        ("NFLX", "Netflix, Inc.", "NASDAQ", 702.40, 3_500_000, 1.3),
        ("DIS", "The Walt Disney Company", "NYSE", 95.10, 10_000_000, 1.0),
    ),
    "Consumer Discretionary": (
        ("AMZN", "Amazon.com, Inc.", "NASDAQ", 195.80, 40_000_000, 1.2),
        ("TSLA", "Tesla, Inc.", "NASDAQ", 251.30, 90_000_000, 1.9),
        ("SBUX", "Starbucks Corporation", "NASDAQ", 97.60, 9_000_000, 1.0),
        ("HD", "The Home Depot, Inc.", "NYSE", 391.20, 3_500_000, 0.9),
        ("NKE", "NIKE, Inc.", "NYSE", 79.80, 11_000_000, 1.1),
    ),
    "Consumer Staples": (
        ("PEP", "PepsiCo, Inc.", "NASDAQ", 164.70, 6_000_000, 0.6),
        ("COST", "Costco Wholesale Corporation", "NASDAQ", 903.50, 2_000_000, 0.8),
        ("PG", "The Procter & Gamble Company", "NYSE", 169.40, 7_000_000, 0.6),
        ("KO", "The Coca-Cola Company", "NYSE", 62.30, 14_000_000, 0.6),
        ("WMT", "Walmart Inc.", "NYSE", 80.20, 18_000_000, 0.7),
    ),
    "Financials": (
        ("JPM", "JPMorgan Chase & Co.", "NYSE", 221.40, 9_000_000, 1.0),
        ("V", "Visa Inc.", "NYSE", 289.90, 7_000_000, 0.8),
        ("MA", "Mastercard Incorporated", "NYSE", 501.30, 3_000_000, 0.8),
        ("BAC", "Bank of America Corporation", "NYSE", 40.10, 35_000_000, 1.1),
        ("GS", "The Goldman Sachs Group, Inc.", "NYSE", 502.60, 2_500_000, 1.1),
        ("WFC", "Wells Fargo & Company", "NYSE", 60.40, 16_000_000, 1.1),
        ("BRK.B", "Berkshire Hathaway Inc. Class B", "NYSE", 459.70, 4_000_000, 0.7),
        ("PYPL", "PayPal Holdings, Inc.", "NASDAQ", 78.20, 12_000_000, 1.3),
    ),
    "Health Care": (
        ("LLY", "Eli Lilly and Company", "NYSE", 879.30, 3_000_000, 1.2),
        ("UNH", "UnitedHealth Group Incorporated", "NYSE", 561.20, 4_000_000, 1.0),
        ("JNJ", "Johnson & Johnson", "NYSE", 160.30, 7_000_000, 0.6),
        ("PFE", "Pfizer Inc.", "NYSE", 28.90, 35_000_000, 0.9),
        ("MRK", "Merck & Co., Inc.", "NYSE", 109.80, 9_000_000, 0.8),
        ("ABBV", "AbbVie Inc.", "NYSE", 190.40, 6_000_000, 0.8),
    ),
    "Energy": (
        ("XOM", "Exxon Mobil Corporation", "NYSE", 118.20, 15_000_000, 0.9),
        ("CVX", "Chevron Corporation", "NYSE", 154.60, 8_000_000, 0.9),
    ),
    "Industrials": (
        ("BA", "The Boeing Company", "NYSE", 159.70, 8_000_000, 1.3),
        ("CAT", "Caterpillar Inc.", "NYSE", 371.50, 3_000_000, 1.0),
        ("GE", "GE Aerospace", "NYSE", 181.20, 5_000_000, 1.1),
    ),
}

INSTRUMENTS: dict[str, Instrument] = {
    symbol: Instrument(symbol, name, exchange, sector, price, volume, volatility)
    for sector, listings in _LISTINGS.items()
    for symbol, name, exchange, price, volume, volatility in listings
}

_ACCOUNTS = (
    DemoAccount(
        account_id="ACC-1001",
        owner="alice",
        cash=43_912.57,
        margin=True,
        holdings=(
            Holding("AAPL", 150, 187.42),
            Holding("MSFT", 80, 362.15),
            Holding("NVDA", 300, 98.77),
            Holding("AMZN", 120, 178.30),
            Holding("GOOGL", 100, 141.05),
            Holding("JPM", 90, 198.64),
            Holding("V", 70, 301.12),
            Holding("XOM", 150, 121.88),
        ),
        watchlists=(
            Watchlist(
                "wl-1001-tech",
                "Tech Leaders",
                ("AAPL", "MSFT", "NVDA", "AMD", "AVGO", "META", "GOOGL"),
            ),
            Watchlist(
                "wl-1001-income",
                "Dividend Income",
                ("JNJ", "PG", "KO", "PEP", "XOM", "CVX", "ABBV"),
            ),
        ),
    ),
    DemoAccount(
        account_id="ACC-1002",
        owner="bob",
        cash=12_480.35,
        margin=True,
        holdings=(
            Holding("TSLA", 40, 232.18),
            Holding("AMD", 60, 156.40),
            Holding("KO", 100, 58.95),
        ),
        watchlists=(
            Watchlist("wl-1002-ev", "EV & Chips", ("TSLA", "NVDA", "AMD", "INTC", "QCOM")),
        ),
    ),
    DemoAccount(
        account_id="ACC-1003",
        owner="carol",
        cash=3_215.80,
        margin=False,
        holdings=(Holding("AAPL", 25, 171.60),),
    ),
    DemoAccount(
        account_id="ACC-2001",
        owner="partner:northbridge",
        cash=85_250.00,
        margin=True,
        holdings=(
            Holding("MSFT", 200, 331.47),
            Holding("UNH", 50, 512.90),
            Holding("PG", 120, 152.33),
        ),
        watchlists=(Watchlist("wl-2001-core", "Core Holdings", ("MSFT", "UNH", "PG", "BRK.B")),),
    ),
    DemoAccount(
        account_id="ACC-2002",
        owner="partner:northbridge",
        cash=150_000.00,
        margin=True,
        holdings=(
            Holding("NVDA", 500, 112.36),
            Holding("META", 60, 489.20),
            Holding("LLY", 30, 745.10),
            Holding("COST", 15, 842.75),
        ),
    ),
)

ACCOUNTS: dict[str, DemoAccount] = {account.account_id: account for account in _ACCOUNTS}
