"""Who may use the board: each user has a token, from ``ECM_DESK_TOKENS`` ("user:token"
pairs, comma separated) or ``ECM_DESK_TOKENS_FILE`` (one pair a line, ``#`` comments). A
person signs in with both; the board then keeps a session cookie (random, HttpOnly,
SameSite=Strict) and writes their id as every action's ``by``. No token is ever logged."""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path

from stream.errors import SettingsError
from stream.settings import Settings

SESSION_COOKIE = "ecm_desk"


class Users:
    def __init__(self, tokens: dict[str, str]) -> None:
        self._tokens = tokens
        self._sessions: dict[str, str] = {}  # session id -> user id

    @classmethod
    def from_settings(cls, settings: Settings) -> Users:
        pairs = [p for p in settings.desk_tokens.split(",") if p.strip()]
        if settings.desk_tokens_file:
            lines = Path(settings.desk_tokens_file).read_text().splitlines()
            pairs += [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
        tokens: dict[str, str] = {}
        for pair in pairs:
            user, sep, token = pair.strip().partition(":")
            if not sep or not user or len(token) < 8:
                raise SettingsError("a desk token is 'user:token', the token 8 characters "
                                    "or more")
            tokens[user] = token
        return cls(tokens)

    def __bool__(self) -> bool:
        return bool(self._tokens)

    def sign_in(self, user: str, token: str) -> str | None:
        """A new session id, or None for a wrong user or token."""
        held = self._tokens.get(user)
        if held is None or not hmac.compare_digest(held.encode(), token.encode()):
            return None
        session = secrets.token_urlsafe(32)
        self._sessions[session] = user
        return session

    def user(self, session: str | None) -> str | None:
        return self._sessions.get(session) if session else None

    def sign_out(self, session: str | None) -> None:
        if session:
            self._sessions.pop(session, None)
