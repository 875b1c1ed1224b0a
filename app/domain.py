"""The platform's identifiers, one rule each for every layer that accepts them.

The admin API links accounts to consumers and the partner API places orders in them, so
both check an account id against the same pattern: an account an admin can link is one a
partner can trade in. Depends on nothing in `app`, so any layer may import it.
"""

# A ticker: upper case, digits, `.` and `-` (BRK.B, RDS-A), at most 10 characters.
SYMBOL_PATTERN = r"^[A-Z][A-Z0-9.\-]{0,9}$"

# A trading account: an upper-case prefix naming its kind, a dash, its number (ACC-2001).
ACCOUNT_ID_PATTERN = r"^[A-Z]{2,8}-[A-Z0-9]{1,24}$"
