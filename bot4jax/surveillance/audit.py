"""The surveillance audit log: one JSON line per alert, appended atomically.

Each alert becomes one line (`Alert.to_record()` plus `logged_at`, ISO UTC wall time, and `source`)
written with a single `write` on a file opened with O_APPEND, so concurrent appenders never
interleave within a line, and (by default) fsynced before `append` returns, so an alert that was
reported is on disk. A crash in the middle of a write can only leave a partial last line without its
newline: opening the log cuts that tail off (reported in `repaired_bytes`) so the file stays valid
JSON lines. Alert ids continue from the last record in the file.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from pathlib import Path

from bot4jax.errors import DataError
from bot4jax.surveillance.alerts import Alert

log = logging.getLogger(__name__)
_TAIL = 1 << 16  # bytes read back from the end to find the last record


class AuditLog:
    """Append-only JSON-lines log of alerts at `path` (created with its folder if missing)."""

    def __init__(self, path: str | os.PathLike, fsync: bool = True, source: str = ""):
        self.path = Path(path)
        self.fsync = fsync
        self.source = source
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.repaired_bytes = self._repair_tail()
        self.next_id = self._last_id() + 1
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _repair_tail(self) -> int:
        """Cut a partial last line (no newline) left by a crash; return the bytes removed."""
        if not self.path.exists():
            return 0
        with open(self.path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return 0
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return 0
            pos = size
            while pos > 0:  # find the last newline, reading backwards in blocks
                start = max(0, pos - _TAIL)
                f.seek(start)
                block = f.read(pos - start)
                k = block.rfind(b"\n")
                if k >= 0:
                    cut = start + k + 1
                    break
                pos = start
            else:
                cut = 0
            f.truncate(cut)
            f.flush()
            os.fsync(f.fileno())
        removed = size - cut
        log.warning("%s: removed a partial last record (%d bytes) left by an interrupted write", self.path, removed)
        return removed

    def _last_id(self) -> int:
        if not self.path.exists():
            return -1
        with open(self.path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - _TAIL))
            lines = f.read().splitlines()
        for line in reversed(lines):
            try:
                return int(json.loads(line)["alert_id"])
            except (ValueError, KeyError, TypeError):
                continue
        return -1

    def append(self, alert: Alert) -> dict:
        """Write one alert as one line; return the record written."""
        rec = alert.to_record()
        rec["logged_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")
        rec["source"] = self.source
        data = (json.dumps(rec, sort_keys=True, allow_nan=False, separators=(",", ":")) + "\n").encode()
        written = os.write(self._fd, data)
        if written != len(data):  # a regular file takes the whole buffer unless the disk is full
            raise OSError(f"{self.path}: short write ({written} of {len(data)} bytes); the log will be repaired "
                          "on the next open")
        if self.fsync:
            os.fsync(self._fd)
        return rec

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


_FIELDS = {"alert_id": int, "detector": str, "level": str, "ts": int, "start_ts": int, "end_ts": int,
           "participants": list, "event_ids": list, "measures": dict}


def read_audit_log(path: str | os.PathLike) -> list[dict]:
    """Every record of an audit log, in order; a malformed line raises DataError (file, line, field)."""
    path = Path(path)
    records = []
    with open(path, "rb") as f:
        for row, line in enumerate(f, 1):
            if not line.endswith(b"\n"):
                raise DataError(str(path), "partial last record (no newline): open the log with AuditLog to "
                                "repair it", row=row)
            try:
                rec = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise DataError(str(path), f"not valid JSON: {e}", row=row) from None
            if not isinstance(rec, dict):
                raise DataError(str(path), "a record must be a JSON object", row=row)
            for name, typ in _FIELDS.items():
                if name not in rec:
                    raise DataError(str(path), "missing field", row=row, field=name)
                if not isinstance(rec[name], typ) or (typ is int and isinstance(rec[name], bool)):
                    raise DataError(str(path), f"expected {typ.__name__}, got {rec[name]!r}", row=row, field=name)
            records.append(rec)
    return records
