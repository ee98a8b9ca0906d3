"""Messages on the wire: a small envelope around the payload.

Every message lockstep publishes carries who sent it, a per-sender sequence number
(so a subscriber can see exactly what it missed), a timestamp, an id and the data::

    {"ls":1,"id":"3f9a0c1e-7","from":"agent-7","seq":7,"ts":1700000000.5,"data":{"id":1}}

JSON is the default so redis-cli and other languages can read and write messages;
msgpack is an option. The bytes work is done in Rust (``lockstep._core``); the data
itself is encoded and decoded here with msgspec, optionally into a ``msgspec.Struct``.

A message published by a foreign client (plain JSON, text or bytes, no envelope) is
still delivered, with ``sender``, ``seq``, ``ts`` and ``id`` set to ``None``.

``EnvelopeCodec`` is not thread-safe: its sequence counter belongs to one event loop.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Literal

import msgspec

from . import _core
from .errors import ConfigError, EnvelopeError, InvalidInputError
from .names import validate_name

__all__ = ["CODECS", "DEFAULT_MAX_SIZE", "CodecName", "EnvelopeCodec", "Message"]

CodecName = Literal["json", "msgpack"]
CODECS: Final = ("json", "msgpack")
DEFAULT_MAX_SIZE: Final = _core.DEFAULT_MAX_SIZE

# What msgspec raises for data it cannot encode or decode (RecursionError: nesting
# deeper than the interpreter allows, e.g. a hostile foreign payload).
_ENCODE_ERRORS = (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError)
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, RecursionError)


class Message(msgspec.Struct, frozen=True, gc=False):
    """One delivered message. For a foreign message ``sender``, ``seq``, ``ts`` and ``id``
    are ``None``. ``position`` is the message's place in a durable log (a stream entry id on
    ``redis+streams://``, a log id on ``file://`` and ``memory://``; ``None`` for pub/sub):
    pass it as ``from_id`` to replay what came after it.

    ``gc=False``: a subscriber creates hundreds of thousands of these a second, and the
    cyclic garbage collector scanning them cost more than building them. A Message is
    never part of a reference cycle unless its ``data`` is made into one by hand."""

    channel: str
    data: Any
    sender: str | None = None
    seq: int | None = None
    ts: float | None = None
    id: str | None = None
    position: str | None = None


def _on_channel(err: EnvelopeError, channel: str) -> EnvelopeError:
    """The same error (same class, same attributes) with the channel named first."""
    named = err.__class__(f"message on channel {channel!r}: {err}")
    named.__dict__.update(err.__dict__)
    named.__cause__ = err
    return named


def _data_error(channel: str, kind: str, type: Any, err: Exception) -> EnvelopeError:
    if isinstance(err, msgspec.ValidationError):
        name = getattr(type, "__name__", repr(type))
        return EnvelopeError(f"message on channel {channel!r} does not match {name}: {err}")
    return EnvelopeError(f"message on channel {channel!r} has undecodable {kind} data: {err}")


class EnvelopeCodec:
    """Encodes outgoing data into envelopes and decodes incoming payloads into Messages.

    ``sender`` is validated as a name. Sequence numbers start at 1 and advance only
    when an encode succeeds, so a rejected message never shows up as a gap. Ids are
    ``f"{id_prefix}{seq}"`` with a short random prefix per codec instance, so ids stay
    unique across restarts of the same sender. ``now`` returns unix seconds (injectable
    for tests).
    """

    def __init__(
        self,
        sender: str,
        codec: str = "json",
        max_size: int = DEFAULT_MAX_SIZE,
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        validate_name(sender, what="sender")
        if codec not in CODECS:
            raise ConfigError(f"unknown codec {codec!r}; accepted codecs: {', '.join(map(repr, CODECS))}")
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 0:
            raise InvalidInputError(f"max_size must be 0 or more bytes, got {max_size!r}")
        self.sender: Final = sender
        self.codec: Final[CodecName] = "json" if codec == "json" else "msgpack"
        self.max_size: Final = max_size
        self.id_prefix: Final = secrets.token_hex(4) + "-"
        self._now = now
        self._next_seq = 1
        self._encoder: msgspec.json.Encoder | msgspec.msgpack.Encoder = (
            msgspec.json.Encoder() if self.codec == "json" else msgspec.msgpack.Encoder()
        )
        self._decoders: dict[tuple[str, Any], msgspec.json.Decoder[Any] | msgspec.msgpack.Decoder[Any]] = {}

    @property
    def next_seq(self) -> int:
        """The sequence number the next encoded message will carry."""
        return self._next_seq

    def _encode_data(self, data: object) -> bytes:
        try:
            return self._encoder.encode(data)
        except _ENCODE_ERRORS as e:
            raise EnvelopeError(
                f"cannot encode data of type {type(data).__name__} as {self.codec}: {e}"
            ) from e

    def encode(self, data: object) -> bytes:
        """One envelope around ``data`` (anything msgspec encodes, Structs included)."""
        seq = self._next_seq
        envelope = _core.encode_envelope(
            self._encode_data(data),
            self.sender,
            seq,
            self._now(),
            f"{self.id_prefix}{seq}",
            self.codec,
            self.max_size,
        )
        self._next_seq = seq + 1
        return envelope

    def encode_many(self, items: Iterable[object]) -> list[bytes]:
        """Envelopes for all items with consecutive seqs, in one Rust call. All or nothing."""
        payloads = [self._encode_data(item) for item in items]
        envelopes = _core.encode_batch(
            payloads, self.sender, self._next_seq, self._now(), self.id_prefix, self.codec, self.max_size
        )
        self._next_seq += len(envelopes)
        return envelopes

    def _decoder(self, fmt: str, type: Any) -> msgspec.json.Decoder[Any] | msgspec.msgpack.Decoder[Any]:
        key = (fmt, type)
        decoder = self._decoders.get(key)
        if decoder is None:
            target = Any if type is None else type
            decoder = msgspec.json.Decoder(target) if fmt == "json" else msgspec.msgpack.Decoder(target)
            self._decoders[key] = decoder
        return decoder

    def _data(self, channel: str, data: bytes, kind: str, type: Any) -> Any:
        try:
            if kind == "envelope":
                return self._decoder(self.codec, type).decode(data)
            if kind == "json":
                return self._decoder("json", type).decode(data)
            value: str | bytes = data.decode() if kind == "text" else data
            return value if type is None else msgspec.convert(value, type)
        except _DECODE_ERRORS as e:
            raise _data_error(channel, kind, type, e) from e

    def _message(self, channel: str, decoded: tuple[Any, ...], type: Any) -> Message:
        sender, seq, ts, id, data, kind = decoded
        return Message(channel, self._data(channel, data, kind, type), sender, seq, ts, id)

    def decode(self, channel: str, payload: bytes, type: Any = None) -> Message:
        """The Message in ``payload``; with ``type`` (e.g. a msgspec.Struct), data is
        decoded into it. Raises EnvelopeError (or MessageTooLargeError) naming the channel."""
        try:
            decoded = _core.decode_envelope(payload, self.codec, self.max_size)
        except EnvelopeError as e:
            raise _on_channel(e, channel) from e
        return self._message(channel, decoded, type)

    def decode_many(
        self, channel: str, payloads: Sequence[bytes], type: Any = None
    ) -> list[Message | EnvelopeError]:
        """Decode each payload on its own: a bad one becomes an EnvelopeError in its place."""
        out: list[Message | EnvelopeError] = []
        append = out.append
        decode_data = self._decoder(self.codec, type).decode
        for item in _core.decode_batch(payloads, self.codec, self.max_size):
            if isinstance(item, EnvelopeError):
                append(_on_channel(item, channel))
                continue
            sender, seq, ts, id, data, kind = item
            try:
                # the common case inline; foreign payloads take the general path
                value = decode_data(data) if kind == "envelope" else self._data(channel, data, kind, type)
            except EnvelopeError as e:
                append(e)
                continue
            except _DECODE_ERRORS as e:
                append(_data_error(channel, kind, type, e))
                continue
            append(Message(channel, value, sender, seq, ts, id))
        return out
