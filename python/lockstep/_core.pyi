"""Stub of ``lockstep._core``, the Rust extension (pyo3 glue over ``rust/core``).

Errors are the classes of :mod:`lockstep.errors` (looked up by name, never redefined):
``InvalidNameError`` for bad names, ``EnvelopeError`` / ``MessageTooLargeError`` for
envelopes (``MessageTooLargeError`` carries ``size`` and ``limit``), ``ProtocolError``
for malformed RESP (carries ``offset``, the byte offset in the stream),
``ConfigError`` for an unknown codec, ``InvalidInputError`` for other bad arguments.
Arguments of the wrong type raise ``TypeError``. No Rust panic reaches Python.
"""

from collections.abc import Callable, Sequence
from typing import Any, Final, Literal, TypeAlias, final

from lockstep.errors import EnvelopeError

__all__ = [
    "DEFAULT_MAX_BULK",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_SIZE",
    "MAX_NAME_LEN",
    "MessageDecoder",
    "HeldLeases",
    "LeaseRecordFile",
    "LeaseTable",
    "VERSION",
    "Decision",
    "RateLeasePool",
    "RateRule",
    "RateTable",
    "RespError",
    "RespParser",
    "ReplyReader",
    "count_lines",
    "decode_batch",
    "decode_envelope",
    "encode_batch",
    "encode_envelope",
    "encode_lines",
    "json_lines",
    "lease_record_size",
    "longest_line",
    "pack_command",
    "pack_commands",
    "pack_each",
    "pack_envelopes",
    "pack_publish",
    "parse_rate",
    "rate_clock_us",
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

def pack_each(prefix: Sequence[_Arg], items: Sequence[bytes | str]) -> bytes:
    """One command per item, ``*prefix, item`` (``XADD key * m <payload>``, ``XACK key group
    <id>``...), in one buffer. An empty prefix: InvalidInputError."""

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

# -- the subscriber hot path (rust/python/src/pubsub.rs) ----------------------------------
_Jump: TypeAlias = tuple[int, str, int, int]
"""``(index, sender, first_missed, last_missed)``: the message at ``items[index]`` showed
that ``sender`` skipped the seqs ``first_missed..last_missed`` (inclusive)."""
_Items: TypeAlias = list[Any]
"""``Message`` instances (of the decoder's ``message_type``), or ``EnvelopeError``
instances in the place of bad payloads (with ``channel``, ``position``, ``sender``,
``seq``, ``id`` attributes, and ``payload`` when the envelope itself was bad)."""
_PushEvent: TypeAlias = tuple[Any, ...]
"""``(kind, channel, count)`` for subscribe/unsubscribe confirmations, ``("pong", payload)``,
``("error", message)`` or ``("unexpected", text)``."""

def pack_envelopes(
    prefix: Sequence[bytes | str],
    lines: bytes,
    count: int,
    sender: str,
    seq_start: int,
    ts: float,
    id_prefix: str,
    max_size: int = 1048576,
) -> tuple[bytes, int]:
    """The publish hot path: the ``count`` items of ``lines`` (JSON lines, as msgspec's
    ``Encoder.encode_lines`` writes a list) as envelopes (seqs from ``seq_start``, ids
    ``f"{id_prefix}{seq}"``), each written as the command ``*prefix, envelope``
    (``PUBLISH channel``, ``XADD key * m``) into one buffer. Returns ``(buffer, count)``.
    All or nothing: EnvelopeError unless ``lines`` is ``count`` non-empty UTF-8 lines,
    MessageTooLargeError for an envelope over ``max_size``. Each line is enveloped as it
    is: malformed JSON (only a ``msgspec.Raw`` can make it) reaches subscribers as an
    EnvelopeError in that message's place."""

def encode_lines(
    lines: bytes, count: int, sender: str, seq_start: int, ts: float, id_prefix: str, max_size: int = 1048576
) -> list[bytes]:
    """The envelopes of the ``count`` items of ``lines``, as ``pack_envelopes`` checks them."""

def json_lines(array: bytes) -> bytes:
    """``array`` (a JSON array) as JSON lines, for items holding newlines of their own (a
    ``msgspec.Raw`` of pretty-printed JSON): each newline between tokens becomes a space.
    EnvelopeError for an item not shaped like one value or a raw newline inside a string."""

def count_lines(lines: bytes) -> int:
    """How many newlines ``lines`` holds (vectorised; ``bytes.count`` is not)."""

def longest_line(lines: bytes) -> int:
    """The length in bytes of the longest line of ``lines``; 0 when there is none."""

@final
class MessageDecoder:
    """Turns payloads into messages for one subscription or consumer. Envelopes (JSON or
    msgpack, told apart by their marker) are decoded in Rust; the JSON data of a whole batch
    is decoded by ONE call ``decode_lines(b"d1\\nd2\\n...") -> list`` (an item holding a newline
    is decoded alone), its msgpack data by ONE
    call ``decode_msgpack_array(<msgpack array>) -> list`` (when given); the rest (typed
    foreign text or bytes, msgpack data without ``decode_msgpack_array``) by
    ``decode_item(channel, data, kind)`` with kind ``"json"``, ``"msgpack"``, ``"text"`` or
    ``"bytes"``, also the fallback when a batch call raises.
    Messages are built as ``message_type(channel, data, sender, seq, ts, id, position)``.
    With ``track_seqs`` it remembers each sender's last seq and reports jumps."""

    def __new__(
        cls,
        message_type: Callable[..., Any],
        decode_lines: Callable[[bytes], Sequence[Any]],
        decode_item: Callable[[str, bytes, str], Any],
        *,
        decode_msgpack_array: Callable[[bytes], Sequence[Any]] | None = None,
        typed: bool = False,
        track_seqs: bool = True,
        max_size: int = 1048576,
    ) -> MessageDecoder: ...
    def add_channel(self, wire: bytes | str, channel: str) -> None:
        """Deliver what arrives on ``wire`` (a pub/sub channel or stream key) as ``channel``."""
    def reset_tracking(self) -> None: ...
    def decode(
        self, channels: str | Sequence[str], payloads: Sequence[bytes], positions: Sequence[Any] | None = None
    ) -> tuple[_Items, list[_Jump]]: ...

@final
class ReplyReader:
    """Incremental RESP reader for lockstep's own connections: generic replies, pub/sub
    frames and stream replies, each turned into Python objects in one call."""

    def __new__(cls, max_bulk: int = 536870912, max_depth: int = 32) -> ReplyReader: ...
    def feed(self, data: bytes) -> None: ...
    @property
    def buffered(self) -> int: ...
    def take(self, count: int) -> list[_Reply]:
        """Up to ``count`` complete replies."""
    def skip(self, count: int) -> tuple[int, RespError | None]:
        """Consume up to ``count`` replies unbuilt: ``(consumed, first error reply)``."""
    def drain_pushes(self, decoder: MessageDecoder) -> tuple[_Items, list[_Jump], list[_PushEvent]]:
        """Every complete frame of a subscribed connection."""
    def take_stream_read(
        self, decoder: MessageDecoder
    ) -> tuple[_Items, list[_Jump], list[str], list[tuple[bytes, str]]] | RespError | None:
        """The next reply as an XREAD/XREADGROUP reply: ``(items, jumps, deleted_ids, last)``,
        ``last`` holding ``(stream key, last entry id)`` per stream that had entries."""
    def take_claim(
        self, decoder: MessageDecoder
    ) -> tuple[_Items, list[int], list[str], list[str]] | RespError | None:
        """The next reply as the claim script's: ``(items, delivery_counts, deleted_ids, dead_ids)``."""

_HolderRow: TypeAlias = tuple[str, str, str, int, float]
"""``(token, owner, session, fence, expires_at)``."""
_WaiterRow: TypeAlias = tuple[str, str, str, float]
"""``(ticket, owner, session, expires_at)``; a waiter's ticket is its lease token."""
_Blocker: TypeAlias = tuple[str, list[str], list[str]]
"""``(resource, holder owners, owners of the waiters ahead)``."""
_Granted: TypeAlias = tuple[Literal["granted"], list[int], list[str]]
"""``("granted", fences (one per resource), resources whose counter was raised to its floor)``."""
_Busy: TypeAlias = tuple[Literal["busy"], list[_Blocker], float | None, bool]
"""``("busy", blockers, retry_in seconds (until a holder or a waiter ahead expires), queued)``."""

@final
class HeldLeases:
    """The leases one client holds, for its renewer. Times are seconds on the caller's
    monotonic clock. A lease's deadline is ``sent_at + ttl`` (``sent_at``: when the
    request that granted or renewed it was sent). It may be renewed from ttl/3 after
    that and the renewer wakes for it by ttl/3 plus up to 20 % (seeded jitter). Bad
    values (empty token, NaN, ttl <= 0, a token held twice) raise InvalidInputError."""

    def __new__(cls, seed: int = 0) -> HeldLeases: ...
    def insert(self, token: str, resources: list[str], fences: list[int], ttl: float, sent_at: float) -> float:
        """Record a granted lease; returns its deadline."""
    def renewed(self, token: str, sent_at: float, ttl: float | None = None) -> float | None:
        """A renewal sent at ``sent_at`` succeeded; returns the new deadline (None: unknown token)."""
    def renewal_failed(self, token: str, now: float) -> float | None:
        """A renewal got no answer; returns when to try again, or None when no try fits
        before the deadline."""
    def due(self, now: float) -> list[str]:
        """Tokens that may be renewed now, earliest deadline first."""
    def expired(self, now: float) -> list[str]:
        """Remove and return the tokens whose deadline has passed."""
    def remove(self, token: str) -> bool: ...
    def next_wakeup(self) -> float | None:
        """When the renewer must next wake (a renewal or a deadline); None when empty."""
    def observe_fence(self, resource: str, fence: int, floor: int | None = None) -> None:
        """Note a granted fence; one not above the highest seen so far (or, given, above
        ``floor``: what ``highest_fence(resource)`` said when the request was sent, 0 for
        none, so concurrent grants may arrive in any order) raises DataLossDetected (with
        ``resource``, ``fence``, ``highest``)."""
    def highest_fence(self, resource: str) -> int | None: ...
    def deadline(self, token: str) -> float | None: ...
    def tokens(self) -> list[str]: ...
    def __len__(self) -> int: ...
    def __contains__(self, key: str, /) -> bool: ...

@final
class LeaseTable:
    """Authoritative lease state (the memory and SQLite drivers): per resource its slot
    count, holders, a fence counter that only grows and a FIFO queue of waiters whose
    entries expire unless refreshed. A request is granted all or nothing, only when no
    live waiter is ahead of it beyond the free slots. Acquire and release are
    idempotent by token. Bad values raise InvalidInputError."""

    def __new__(cls) -> LeaseTable: ...
    def acquire(
        self,
        token: str,
        owner: str,
        session: str,
        resources: list[str],
        slots: int,
        ttl: float,
        now: float,
        queue_ttl: float | None = None,
        floors: list[int] | None = None,
    ) -> _Granted | _Busy:
        """Take every resource or none. When busy and ``queue_ttl`` is given, join (or stay
        in) every resource's queue with entries living ``queue_ttl`` seconds. ``floors``:
        per resource, a value the fence counter is first raised to if below it."""
    def renew(self, token: str, resources: list[str], ttl: float, now: float) -> bool:
        """Extend the hold on every resource; False (nothing changed) unless all are held."""
    def release(self, token: str, resources: list[str], now: float) -> tuple[bool, list[str]]:
        """Drop the token's holder and queue entries: ``(it held any, tickets to wake)``."""
    def release_session(self, session: str, now: float) -> tuple[bool, list[str]]: ...
    def expire(self, now: float) -> list[str]:
        """Prune expired entries everywhere; returns tickets to wake."""
    def is_held(self, token: str, resource: str, fence: int, now: float) -> bool:
        """Held unexpired with this fence (and, for one slot, the resource's latest fence)."""
    def holders(self, resource: str, now: float) -> list[_HolderRow]: ...
    def queue(self, resource: str, now: float) -> list[_WaiterRow]: ...
    def fence(self, resource: str) -> int:
        """The last fence granted (0: never)."""
    def load(
        self, resource: str, slots: int, fence: int, holders: list[_HolderRow], queue: list[_WaiterRow]
    ) -> None: ...
    def dump(self, resource: str) -> tuple[int, int, list[_HolderRow], list[_WaiterRow]] | None:
        """``(slots, fence, holders, queue)`` as stored (expired entries included)."""
    def resource_names(self) -> list[str]: ...
    def load_record(self, resource: str, data: bytes, boot: str, base_fence: int) -> bool:
        """Load ``resource`` from its record file's bytes (the file driver): True if they hold
        a record of this ``boot`` and resource; otherwise it starts empty (1 slot) at ``base_fence``."""
    def dump_record(self, resource: str, boot: str) -> bytes | None:
        """The record-file bytes of ``resource`` for this ``boot`` (None: not in the table)."""

def lease_record_size(data: bytes) -> int | None:
    """The bytes a lease record needs in all, from the first four of its file (None: fewer)."""

@final
class LeaseRecordFile:
    """One resource's lease record file (the file driver's hot path): each call takes its
    ``flock`` without waiting, reads, applies the LeaseTable rules, writes back and unlocks.
    None: not done here (the critical section is busy, the file was unlinked, or for a
    grant the resource is busy); raises OSError when the file cannot be used."""

    def __new__(cls, path: str, resource: str, boot: str, base_fence: int) -> LeaseRecordFile: ...
    def try_grant(
        self, token: str, owner: str, session: str, slots: int, ttl: float, floor: int
    ) -> tuple[int, bool] | None:
        """``(fence, raised)`` when granted now (``raised``: the counter was below ``floor``)."""
    def release(self, token: str) -> tuple[bool, list[str]] | None:
        """``(it held it unexpired, tickets to wake)``."""
    def renew(self, token: str, ttl: float) -> bool | None:
        """Whether the token still held it (then its expiry is ``ttl`` from now)."""

# -- rate limits (rust/python/src/ratelimit.rs) ------------------------------------------
# Times are whole microseconds since the Unix epoch (``now`` defaults to
# ``rate_clock_us()``); durations in a Decision are seconds. Bad keys raise
# InvalidNameError; bad costs and numbers InvalidInputError (a cost above the limit
# or GCRA's burst names the limit); bad rates and configurations ConfigError.

_GrantRow: TypeAlias = tuple[int, int, int, int, int, int, int]
"""``(granted, retry_after_us, token, start_us, end_us, remaining, now_us)``: a leased
block (``granted`` 0: refused), ``token`` naming it for a refund, ``start_us``/``end_us``
offsets from ``now_us`` (first spendable slot; spend everything by then)."""
_RefundRow: TypeAlias = tuple[str, int, int]
"""``(key, token, units)``: units of a leased block to hand back."""
_Source: TypeAlias = Literal["store", "lease", "local", "open"]

def rate_clock_us() -> int:
    """Microseconds since the Unix epoch on a clock that never goes backwards (the wall
    clock read once, advanced by the monotonic clock): the default ``now`` of rate limits."""

def parse_rate(rate: str) -> tuple[int, int]:
    """``"100/minute"``, ``"50/10s"``, ``"10 per 2 minutes"`` -> ``(limit, period_us)``."""

@final
class Decision:
    """The answer to one rate-limit request."""

    def __new__(
        cls,
        allowed: bool,
        retry_after: float,
        remaining: int,
        reset_after: float,
        at: float = 0.0,
        source: _Source = "store",
    ) -> Decision: ...
    @property
    def allowed(self) -> bool: ...
    @property
    def retry_after(self) -> float:
        """Seconds until the same request would be admitted (0.0 when allowed)."""
    @property
    def remaining(self) -> int:
        """Cost-1 requests that would be admitted right after this decision."""
    @property
    def reset_after(self) -> float:
        """Seconds until the key is back to its idle, full state."""
    @property
    def at(self) -> float:
        """When it was decided, Unix seconds on the deciding clock (the store's)."""
    @property
    def source(self) -> _Source:
        """``store`` (the backend), ``lease`` (units leased to this process), ``local`` (the
        local fallback limit), ``open`` (failed open: the store was down)."""
    def __eq__(self, value: object, /) -> bool: ...
    __hash__: None  # type: ignore[assignment]

@final
class RateRule:
    """One limit: ``limit`` units per ``period_us``, by ``algorithm`` (``gcra`` or
    ``sliding_window``); ``burst`` (GCRA only, default 1) is how many may pass at once."""

    def __new__(cls, algorithm: str, limit: int, period_us: int, burst: int | None = None) -> RateRule: ...
    @staticmethod
    def parse(rate: str, algorithm: str = "gcra", burst: int | None = None) -> RateRule: ...
    @property
    def algorithm(self) -> Literal["gcra", "sliding_window"]: ...
    @property
    def limit(self) -> int: ...
    @property
    def period_us(self) -> int: ...
    @property
    def period(self) -> float: ...
    @property
    def burst(self) -> int: ...
    @property
    def emission_us(self) -> int:
        """GCRA's spacing, ``ceil(period_us / limit)``."""
    @property
    def capacity(self) -> int:
        """The largest cost ever admitted: the burst (GCRA) or the limit."""
    @property
    def granularity_us(self) -> int:
        """Sliding-window expiries are rounded up to this (1 up to 1024 per period)."""
    @property
    def fingerprint(self) -> str:
        """``algorithm:limit:period_us:burst``, stored beside the state."""
    def describe(self) -> str: ...
    def check_cost(self, cost: int) -> int:
        """``cost`` if it is 1 to the capacity; InvalidInputError otherwise."""
    def acquire_state(
        self, state: bytes | None, cost: int | None = None, now: int | None = None
    ) -> tuple[Decision, bytes | None, int]:
        """One acquire on a stored state: ``(decision, new state or None when idle, ttl_us)``.
        A state written under another rule is a ConfigError naming both."""
    def peek_state(self, state: bytes | None, now: int | None = None) -> Decision: ...
    def lease_state(
        self, state: bytes | None, min_units: int, max_units: int, lease_us: int, now: int | None = None
    ) -> tuple[_GrantRow, bytes | None, int]: ...
    def refund_state(
        self, state: bytes | None, token: int, units: int, now: int | None = None
    ) -> tuple[int, bytes | None, int]: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class RateTable:
    """Many keys under one rule, in this process; thread-safe."""

    def __new__(cls, rule: RateRule, source: _Source = "store") -> RateTable: ...
    @property
    def rule(self) -> RateRule: ...
    def acquire(self, key: str | None = None, cost: int | None = None, now: int | None = None) -> Decision:
        """Spend ``cost`` (default 1) units of ``key`` (default ``"default"``) if they fit."""
    def hit(self, key: str | None = None, cost: int | None = None) -> bool:
        """``acquire(key, cost).allowed`` on the table's clock, without building a Decision."""
    def peek(self, key: str | None = None, now: int | None = None) -> Decision: ...
    def reset(self, key: str | None = None, now: int | None = None) -> bool: ...
    def lease(self, key: str, min_units: int, max_units: int, lease_us: int, now: int | None = None) -> _GrantRow: ...
    def refund(self, key: str, token: int, units: int, now: int | None = None) -> int: ...
    def live_keys(self, now: int | None = None) -> int: ...

@final
class RateLeasePool:
    """Units leased to this process, spent without a round trip; thread-safe."""

    def __new__(cls, rule: RateRule) -> RateLeasePool: ...
    @property
    def rule(self) -> RateRule: ...
    def spend(self, key: str | None = None, cost: int | None = None, now: int | None = None) -> Decision | None:
        """Decide locally (``source == "lease"``), or None when a block must be leased first."""
    def hit(self, key: str | None = None, cost: int | None = None) -> bool | None:
        """``spend(key, cost)`` as a bool, or None when a block must be leased first."""
    def shortfall(self, key: str | None = None, cost: int | None = None, now: int | None = None) -> int: ...
    def add(
        self, key: str, granted: int, token: int, start_us: int, end_us: int, sent_at: int, received_at: int
    ) -> None:
        """Take in a granted block; ``sent_at``/``received_at`` bracket its round trip."""
    def available(self, key: str | None = None, now: int | None = None) -> int: ...
    def take_refunds(self, now: int | None = None) -> list[_RefundRow]: ...
    def drain(self, now: int | None = None) -> list[_RefundRow]: ...

