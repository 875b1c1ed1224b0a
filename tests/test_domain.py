"""Identifiers with one rule everywhere: an account the admin API links is one partners trade
in, and a ticker order entry takes is one the quote lists take."""

import pytest
from pydantic import ValidationError

from app.admin.consumers import ConsumerCreate
from app.frontends.order_entry import OrderRequest
from app.frontends.partner.v1.views import PartnerOrderRequest
from app.frontends.symbols import distinct_symbols, is_symbol

ORDER = {"symbol": "MSFT", "side": "buy", "type": "market", "quantity": 1}

ACCEPTED = ["ACC-2001", "ACC-1", "BRKR-X7Q2", "IRA-000123456789012345678901"]
REFUSED = ["2001", "acc-2001", "ACC2001", "ACC-", "A-2001", "ACC-20 01", "ACC_2001", ""]


def _admin_accepts(account_id: str) -> bool:
    try:
        ConsumerCreate.model_validate({"name": "acme", "account_ids": [account_id]})
    except ValidationError:
        return False
    return True


def _partner_accepts(account_id: str) -> bool:
    try:
        PartnerOrderRequest.model_validate({**ORDER, "account_id": account_id})
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("account_id", ACCEPTED)
def test_an_account_the_admin_api_links_is_one_partner_order_entry_accepts(
    account_id: str,
) -> None:
    assert _admin_accepts(account_id)
    assert _partner_accepts(account_id)


@pytest.mark.parametrize("account_id", REFUSED)
def test_an_account_the_admin_api_refuses_partner_order_entry_refuses(account_id: str) -> None:
    assert not _admin_accepts(account_id)
    assert not _partner_accepts(account_id)


SYMBOLS = ["AAPL", "BRK.B", "RDS-A", "X", "ABCDEFGHIJ"]
NOT_SYMBOLS = ["aapl", "1AAPL", "ABCDEFGHIJK", "BRK/B", ".A", ""]


def _order_entry_accepts(symbol: str) -> bool:
    try:
        OrderRequest.model_validate({**ORDER, "symbol": symbol})
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_a_ticker_is_one_for_order_entry_and_for_quote_lists(symbol: str) -> None:
    assert is_symbol(symbol)
    assert distinct_symbols(symbol) == symbol
    assert _order_entry_accepts(symbol)


@pytest.mark.parametrize("symbol", NOT_SYMBOLS)
def test_a_non_ticker_is_refused_by_order_entry_and_quote_lists(symbol: str) -> None:
    assert not is_symbol(symbol)
    with pytest.raises(ValueError):
        distinct_symbols(symbol)
    assert not _order_entry_accepts(symbol)
