"""Stable, process-independent hashing for the seeded simulations.

Python's built-in ``hash()`` is salted per process, so two service instances
would disagree; everything that must be reproducible goes through here.
"""

import hashlib

_MASK64 = (1 << 64) - 1


def stable_seed(*parts: object) -> int:
    """A 64-bit integer derived from the parts' text, identical in every process."""
    text = "\x1f".join(str(part) for part in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def mix64(value: int) -> int:
    """SplitMix64 finaliser: a cheap, well-distributed 64-bit integer hash."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def unit_float(hashed: int) -> float:
    """Map a 64-bit hash to a float in [0, 1)."""
    return (hashed >> 11) / float(1 << 53)
