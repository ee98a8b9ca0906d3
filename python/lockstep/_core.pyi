"""Stub of ``lockstep._core``, the Rust extension (pyo3 glue over ``rust/core``).

Errors are the classes of :mod:`lockstep.errors` (looked up by name, never redefined):
``InvalidNameError`` for bad names, ``EnvelopeError`` / ``MessageTooLargeError`` for
envelopes (``MessageTooLargeError`` carries ``size`` and ``limit``), ``ProtocolError``
for malformed RESP (carries ``offset``, the byte offset in the stream),
``ConfigError`` for an unknown codec, ``InvalidInputError`` for other bad arguments.
Arguments of the wrong type raise ``TypeError``. No Rust panic reaches Python.
"""

from collections.abc import Sequence
from typing import Final, Literal, TypeAlias, final

from lockstep.errors import EnvelopeError

__all__ = [
    "DEFAULT_MAX_BULK",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_SIZE",
    "MAX_NAME_LEN",
    "VERSION",
    "RespError",
    "RespParser",
    "decode_batch",
    "decode_envelope",
    "encode_batch",
    "encode_envelope",
    "pack_command",
    "pack_commands",
    "pack_publish",
    "validate_name",
]

VERSION: Final[str]
MAX_NAME_LEN: Final[int]
DEFAULT_MAX_SIZE: Final[int]
"""Default size limit of one envelope or payload, in bytes (1 MiB)."""
DEFAULT_MAX_BULK: Final[int]
"""Default largest bulk string ``RespParser`` accepts, in bytes (512 MiB)."""
DEFAULT_MAX_DEPTH: Final[int]
"""Default deepest nesting of aggregates ``RespParser`` accepts (32)."""

_Codec: TypeAlias = Literal["json", "msgpack"]
_Kind: TypeAlias = Literal["envelope", "json", "text", "bytes"]
_Decoded: TypeAlias = tuple[str | None, int | None, float | None, str | None, bytes, _Kind]
"""``(sender, seq, ts, id, data, kind)``. For a foreign payload (kind ``"json"``,
``"text"`` or ``"bytes"``) the first four are ``None`` and ``data`` is the whole payload."""
_Arg: TypeAlias = bytes | str | int
_Reply: TypeAlias = (
    bytes
    | str
    | int
    | float
    | bool
    | None
    | RespError
    | list[_Reply]
    | dict[_Reply, _Reply]
    | tuple[_Reply, ...]
)
"""A parsed reply: bulk -> bytes, simple string -> str, integer -> int, null -> None,
array/set/push -> list, error reply -> RespError, RESP3 double -> float, boolean -> bool,
map -> dict (aggregate keys become tuples so they are hashable)."""

def validate_name(name: str, what: str = "name") -> None:
    """Raise InvalidNameError unless ``name`` is 1-200 bytes of ``[A-Za-z0-9_.:/@+=#~-]``
    not starting with ``:``, ``/`` or ``.``; ``what`` names the kind of name."""

def encode_envelope(
    data: bytes,
    sender: str,
    seq: int,
    ts: float,
    id: str,
    codec: _Codec = "json",
    max_size: int = 1048576,
) -> bytes:
    """Wrap ``data`` (already encoded in ``codec``'s format) in an envelope.

    JSON: ``{"ls":1,"id":ID,"from":SENDER,"seq":SEQ,"ts":TS,"data":DATA}``; msgpack: the
    same 6-entry map. Raises InvalidNameError (sender, id), EnvelopeError (data not one
    well-formed value, ts not finite, seq outside 0..2**64-1), MessageTooLargeError
    (envelope over ``max_size`` bytes), ConfigError (unknown codec).
    """

def encode_batch(
    datas: Sequence[bytes],
    sender: str,
    seq_start: int,
    ts: float,
    id_prefix: str,
    codec: _Codec = "json",
    max_size: int = 1048576,
) -> list[bytes]:
    """Encode ``datas[i]`` with seq ``seq_start + i`` and id ``f"{id_prefix}{seq}"``.

    All or nothing: the first bad item raises, and an EnvelopeError names its index.
    Large batches run with the GIL released.
    """

def decode_envelope(payload: bytes, codec: _Codec = "json", max_size: int = 1048576) -> _Decoded:
    """Decode one payload. A payload without the envelope marker (JSON: first
    non-whitespace bytes ``{"ls":``; msgpack: ``0x86 0xa2 'l' 's'``) is foreign and is
    returned whole with its kind. A payload with the marker must be a valid envelope,
    else EnvelopeError names what was wrong. Over ``max_size``: MessageTooLargeError."""

def decode_batch(
    payloads: Sequence[bytes], codec: _Codec = "json", max_size: int = 1048576
) -> list[_Decoded | EnvelopeError]:
    """Decode each payload on its own. A malformed one yields an EnvelopeError
    *instance* (not raised) in its place; the others are decoded tuples."""

def pack_command(*args: _Arg) -> bytes:
    """One command as a RESP array of bulk strings (ints as decimal text; bools are
    refused with TypeError). No arguments: InvalidInputError."""

def pack_commands(commands: Sequence[Sequence[_Arg]]) -> bytes:
    """Several commands back to back in one buffer (a pipeline in one write)."""

def pack_publish(channel: bytes | str, payloads: Sequence[bytes]) -> bytes:
    """``PUBLISH channel payload`` for each payload, in one buffer."""

@final
class RespError:
    """An error reply from the server (``-ERR ...``), delivered as a value in
    ``RespParser.drain()``, not raised. ``str(e)`` is the message."""

    def __new__(cls, message: str) -> RespError: ...
    @property
    def message(self) -> str: ...
    @property
    def code(self) -> str:
        """The first word of the message: ``"ERR"``, ``"WRONGTYPE"``, ``"NOSCRIPT"``..."""
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class RespParser:
    """Incremental RESP2 reply parser (plus the RESP3 types ``_ # , % ~ > = !``;
    big numbers ``(`` and attributes ``|`` raise ProtocolError).

    ``feed`` bytes as they arrive, in any chunking; ``drain`` returns every complete
    reply. Malformed input raises ProtocolError naming the byte offset and what was
    expected; the parser then stays failed and every later ``feed``/``drain`` raises
    the same error. If good replies precede the bad bytes, ``drain`` returns them first
    and raises on the next call. Limits: bulk strings over ``max_bulk`` bytes, nesting
    deeper than ``max_depth`` (1 to 1000, else InvalidInputError) and lines over 1 MiB
    are ProtocolErrors.
    """

    def __new__(cls, max_bulk: int = 536870912, max_depth: int = 32) -> RespParser: ...
    def feed(self, data: bytes) -> None: ...
    def drain(self) -> list[_Reply]: ...
    @property
    def buffered(self) -> int:
        """Bytes fed but not yet returned as replies."""
