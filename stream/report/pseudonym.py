"""Keyed pseudonyms, so that a report can leave the office without naming anybody.

A worker, client or visit id becomes its prefix and the first 12 hex digits of
HMAC-SHA256(key, id): the same id, the same pseudonym everywhere in one report (and in
every report made with the same key), and nobody without the key can test a guess. Visit
ids are replaced too, since rosters often build them from the client's id.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

# 48 bits: a region's millions of visits collide with odds of about one in ten million.
DIGITS = 12
PREFIXES = {"worker": "w-", "client": "c-", "visit": "v-", "review": "e-"}


class Pseudonyms:
    def __init__(self, key: bytes | None = None) -> None:
        # No key: a random one, kept for this run only, so its pseudonyms cannot be matched
        # with any other report's.
        self.random_key = not key
        self._key = key or secrets.token_bytes(32)

    def __call__(self, kind: str, identifier: str) -> str:
        digest = hmac.new(self._key, identifier.encode("utf-8"), hashlib.sha256).hexdigest()
        return PREFIXES[kind] + digest[:DIGITS]
