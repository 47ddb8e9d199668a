"""SASL in front of the embedded broker, for the tests: a small Kafka front that
authenticates each connection (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, RFC 5802, against
users made in the test) and then passes its bytes to the broker untouched.

The embedded broker's own ``--authentication`` cannot be used by any client: it refuses
``PLAIN``, and its SCRAM users are created through the broker itself, which the flag then
refuses, while its memory-only storage keeps nothing across a restart to turn the flag on
(docs/operating.md, "Security"). So the test speaks the broker's side of the handshake the
clients' own code performs (``SaslHandshake``, ``SaslAuthenticate`` in every version the
broker advertises), as a SASL-requiring cluster does: anything else before authentication
closes the connection.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import struct
import threading
from dataclasses import dataclass, field

from tests.chaos.proxy import pipe

_API_VERSIONS, _HANDSHAKE, _AUTHENTICATE = 18, 17, 36
_UNSUPPORTED_MECHANISM, _AUTHENTICATION_FAILED, _ILLEGAL_STATE = 33, 58, 34
_HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _uvarint(data: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def _put_uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _skip_tags(data: bytes, i: int) -> int:
    count, i = _uvarint(data, i)
    for _ in range(count):
        _, i = _uvarint(data, i)
        size, i = _uvarint(data, i)
        i += size
    return i


@dataclass
class _Request:
    api_key: int
    version: int
    correlation: int
    body: bytes

    @property
    def flexible(self) -> bool:  # SaslAuthenticate v2 and later use compact fields
        return self.api_key == _AUTHENTICATE and self.version >= 2


def _request(frame: bytes) -> _Request:
    api_key, version, correlation, n = struct.unpack(">hhih", frame[:10])
    i = 10 + max(n, 0)
    req = _Request(api_key, version, correlation, b"")
    if req.flexible:
        i = _skip_tags(frame, i)
    req.body = frame[i:]
    return req


def _frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def _handshake_response(req: _Request, error: int) -> bytes:
    body = struct.pack(">ihi", req.correlation, error, len(MECHANISMS))
    body += b"".join(struct.pack(">h", len(m)) + m.encode() for m in MECHANISMS)
    return _frame(body)


def _authenticate_response(req: _Request, error: int, message: str | None,
                           auth: bytes) -> bytes:
    if req.flexible:
        text = b"\x00" if message is None else _put_uvarint(len(message) + 1) + message.encode()
        body = (struct.pack(">i", req.correlation) + b"\x00" + struct.pack(">h", error) + text
                + _put_uvarint(len(auth) + 1) + auth + struct.pack(">q", 0) + b"\x00")
        return _frame(body)
    text = struct.pack(">h", -1) if message is None else (
        struct.pack(">h", len(message)) + message.encode())
    body = struct.pack(">ih", req.correlation, error) + text + struct.pack(">i", len(auth)) + auth
    if req.version >= 1:
        body += struct.pack(">q", 0)
    return _frame(body)


def _auth_bytes(req: _Request) -> bytes:
    if req.flexible:
        n, i = _uvarint(req.body, 0)
        return req.body[i:i + n - 1]
    (n,) = struct.unpack(">i", req.body[:4])
    return req.body[4:4 + n]


@dataclass
class _Scram:
    """The server's side of one SCRAM exchange (RFC 5802)."""

    mechanism: str
    users: dict[str, str]
    iterations: int = 4096
    step: int = 0
    user: str = ""
    first_bare: str = ""
    server_first: str = ""
    salted: bytes = b""
    nonce: str = field(default_factory=lambda: secrets.token_urlsafe(18))

    @property
    def _hash(self) -> str:
        return _HASHES[self.mechanism]

    def answer(self, data: bytes) -> tuple[bytes | None, bool]:
        """The server's message for the client's, and whether authentication is done; None
        for a failure."""
        text = data.decode()
        if self.step == 0:
            self.step = 1
            self.first_bare = text.split(",", 2)[2]
            attrs = dict(a.split("=", 1) for a in self.first_bare.split(","))
            self.user = attrs["n"]
            if self.user not in self.users:
                return None, False
            salt = hashlib.sha256(self.user.encode()).digest()[:16]
            self.salted = hashlib.pbkdf2_hmac(self._hash, self.users[self.user].encode(),
                                              salt, self.iterations)
            self.nonce = attrs["r"] + self.nonce
            self.server_first = (f"r={self.nonce},s={base64.b64encode(salt).decode()},"
                                 f"i={self.iterations}")
            return self.server_first.encode(), False
        without_proof, _, proof = text.rpartition(",p=")
        attrs = dict(a.split("=", 1) for a in without_proof.split(","))
        if attrs.get("r") != self.nonce:
            return None, False
        message = f"{self.first_bare},{self.server_first},{without_proof}".encode()
        client_key = hmac.digest(self.salted, b"Client Key", self._hash)
        stored = hashlib.new(self._hash, client_key).digest()
        signature = hmac.digest(stored, message, self._hash)
        claimed = bytes(a ^ b for a, b in zip(base64.b64decode(proof), signature, strict=True))
        if not hmac.compare_digest(hashlib.new(self._hash, claimed).digest(), stored):
            return None, False
        server_key = hmac.digest(self.salted, b"Server Key", self._hash)
        verifier = base64.b64encode(hmac.digest(server_key, message, self._hash))
        return b"v=" + verifier, True


class SaslFront:
    """Kafka with SASL on 127.0.0.1:listen, the broker at 127.0.0.1:target behind it."""

    def __init__(self, listen: int, target: int, users: dict[str, str]) -> None:
        self.listen = listen
        self.target = target
        self.users = users
        self.authenticated: list[tuple[str, str]] = []  # (mechanism, user)
        self.refused = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> SaslFront:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.listen)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        try:
            if not await self._authenticate(reader, writer, up_reader, up_writer):
                self.refused += 1
                await writer.drain()
                writer.close()
                up_writer.close()
                return
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, KeyError,
                struct.error, UnicodeDecodeError):
            self.refused += 1
            writer.close()
            up_writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def _authenticate(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            up_reader: asyncio.StreamReader,
                            up_writer: asyncio.StreamWriter) -> bool:
        mechanism = None
        scram: _Scram | None = None
        while True:
            size = await reader.readexactly(4)
            frame = await reader.readexactly(struct.unpack(">i", size)[0])
            req = _request(frame)
            if req.api_key == _API_VERSIONS:  # the broker's own answer: its versions
                up_writer.write(size + frame)
                n = await up_reader.readexactly(4)
                writer.write(n + await up_reader.readexactly(struct.unpack(">i", n)[0]))
                continue
            if req.api_key == _HANDSHAKE:
                (n,) = struct.unpack(">h", req.body[:2])
                mechanism = req.body[2:2 + n].decode()
                ok = mechanism in MECHANISMS
                writer.write(_handshake_response(req, 0 if ok else _UNSUPPORTED_MECHANISM))
                if not ok:
                    return False
                scram = _Scram(mechanism, self.users) if mechanism in _HASHES else None
                continue
            if req.api_key != _AUTHENTICATE or mechanism is None:
                return False  # nothing else before authentication
            data = _auth_bytes(req)
            if scram is None:  # PLAIN: authzid NUL user NUL password
                _, user, password = data.decode().split("\x00")
                held = self.users.get(user)
                ok = held is not None and hmac.compare_digest(held, password)
                reply, done = (b"", True) if ok else (None, False)
            else:
                reply, done = scram.answer(data)
                user = scram.user
            if reply is None:
                writer.write(_authenticate_response(req, _AUTHENTICATION_FAILED,
                                                    "authentication failed", b""))
                return False
            writer.write(_authenticate_response(req, 0, None, reply))
            if done:
                self.authenticated.append((mechanism, user))
                return True
