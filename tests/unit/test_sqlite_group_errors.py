"""Which failed file-driver group reads are retried quietly (the deadline ran out: what was
taken, if anything, comes back after ``idle``) and which are raised (a lasting fault, where
retrying at once would only spin)."""

from __future__ import annotations

import sqlite3

from lockstep.drivers.sqlite_groups import ran_out_of_time
from lockstep.errors import LockstepError, OutcomeUnknown, Timeout


def caused(exc: LockstepError, cause: BaseException) -> LockstepError:
    exc.__cause__ = cause
    return exc


def sqlite_error(code: int) -> sqlite3.OperationalError:
    err = sqlite3.OperationalError("boom")
    err.sqlite_errorcode = code  # type: ignore[attr-defined]
    return err


def test_deadline_overruns_are_retried() -> None:
    assert ran_out_of_time(caused(Timeout("locked"), sqlite_error(sqlite3.SQLITE_BUSY)))
    assert ran_out_of_time(caused(OutcomeUnknown("no reply in time"), TimeoutError()))
    assert ran_out_of_time(caused(OutcomeUnknown("interrupted"), sqlite_error(sqlite3.SQLITE_INTERRUPT)))


def test_lasting_faults_are_raised() -> None:
    assert not ran_out_of_time(caused(OutcomeUnknown("disk"), sqlite_error(sqlite3.SQLITE_IOERR)))
    assert not ran_out_of_time(OutcomeUnknown("no cause"))
