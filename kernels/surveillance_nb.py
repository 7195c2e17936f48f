"""Manipulation detectors over the order-book event stream (Numba): one pass, O(1) state per event.

Each detector is a pair `<name>_init(sizes) -> state` (Python, allocates) and
`<name>_nb(ev, start, cfg, state, out) -> (stop, status)` (compiled): it reads events ev[start:],
updates `state` in place, appends alerts to `out` and returns the index where it stopped with
DONE (all read), OUT_FULL (drain `out` and call again from `stop`) or GROW (a hash table is half full:
`grow` it and call again). Nothing is allocated per event. `ev` is an `EventArrays` of the columns of
`bot4jax.surveillance.events.Events`; `cfg` a float64 vector: the COMMON entries then the detector's own
(layouts below, built by `bot4jax.surveillance.detectors`). The plain-Python references in
tests/surveillance/reference.py implement the same rules and the tests hold them equal.

Common rules
    reference price r: the last finite `mid` of the stream; before any, the last trade price
    level: score s -> LOW/MEDIUM/HIGH/CRITICAL (1..4) where s >= level_scores[0..3]; 0: no alert
    cooldown: an alert for a key (participant, cycle group) is emitted when none was emitted for that
        key within cooldown_ms, or when its level exceeds the last one emitted for it
    participant -1 (unknown) is never aggregated, except by quote stuffing (the key "unknown")

Spoofing (key: participant)
    typical size T = exp(mu), mu the EWMA of log(size) over adds: mu += max(a, 1/n) (log size - mu)
    at the n-th add, a = 1 - 2^(-1/halflife) (the plain mean until n = 1/a); an order's size multiple
    m = size / T before its own add (0, never large, during the first warmup adds).
    A CANCEL (or MODIFY to 0) of a tracked order is spoof-like when m >= size_mult,
    min_dist <= |price - r| / r * 1e4 <= max_dist (r at the add; a MODIFY re-prices and re-sizes the
    order and recomputes m and the distance), lifetime <= max_life and
    filled / size <= max_fill. n = spoof-like cancels of the owner on that side within window_ms.
    Fires when n >= min_orders; s = n / min_orders, x aggravation when the owner traded on the other
    side between the first counted add and now.
Layering (key: participant)
    When participant p trades on side X (as taker or maker) at t_tr it is armed for side S = -X if it
    holds >= min_orders live orders on S with live volume V_S >= imbalance * V_X (stack count c0);
    while its cancel window is open, later trades on X leave the arming as it is.
    A cancel of p's order on S counts when armed, now - t_tr <= cancel_window, the order was added at
    or before t_tr and at most stack_window before it. Fires when counted cancels
    n >= max(min_orders, min_cancel_share * c0); s = n / min_orders.
Wash trading (key: the cycle's set of nodes)
    node(p) = the smallest id of p's linked group, else p. A trade is an edge seller -> buyer.
    The new edge u -> v closes a cycle if u == v (length 1) or a path v -> ... -> u of 1..max_cycle-1
    earlier edges exists, time-ordered, within cycle_ms, through distinct nodes, every size within
    tolerance * q of the new size q; the shortest such path wins, ties to the earliest edges
    (lexicographic by stream position). n = cycles of the same node set within window_ms.
    Fires when n >= min_cycles; s = n / min_cycles.
Ramping (key: participant; -1 = market-wide when the aggressor is unknown)
    Buckets of bucket_ms; per closed bucket the volume v_b and log return g_b of r at trades (an
    empty bucket: 0, 0); nu, var: means of v_b and g_b^2 updated with weight max(a, 1/n) at the n-th
    value (a = 1 - 2^(-1/halflife): running means, then EWMAs).
    At a trade in bucket b: R = log(r / close_{b-W}), V = volume of buckets b-W+1..b, D = aggressive
    volume in direction sign(R) / V, z = |R| / sqrt(var W), vr = V / (nu W). For an aggressor p
    trading in direction sign(R): share = p's directional volume / directional volume, n_p its trades.
    Fires after warmup closed buckets when z >= min_z, vr >= min_volume_ratio, D >= min_direction
    and (p unknown or share >= min_share and n_p >= min_trades); s = min(z / min_z, vr / min_vr).
Quote stuffing (key: participant, -1 included)
    Per participant decayed counts of ADD/CANCEL/MODIFY messages F (time constant fast_ms), S
    (slow_ms) and of trades K (fast_ms): x <- x exp(-dt / tau) (+ 1). At a message: ratio =
    (F / fast) / (S / slow), trade share K / F. Fires when F >= min_messages, ratio >= burst_ratio
    and K / F <= max_trade_ratio; s = F / min_messages. The burst starts at a message that finds F < 0.5.
Momentum ignition (key: participant)
    A run: aggressive trades of p in one direction d, each within max_gap of the previous; its start
    price r0 is r just before its first trade, its share the run's volume / all aggressive volume in
    direction d since the run started (the igniter leads the flow). When the run has >= min_trades
    trades, d (r - r0) / r0 * 1e4 >= min_move and share >= min_share, it is an active burst (updated
    while the run grows). While active (until window_ms after its last trade): peak = the extreme of
    r in direction d, unwind = p's volume traded against d (taker or maker) since the burst became
    active, retrace = the largest d (peak - r) / (d (peak - r0)) so far. Fires when retrace >=
    min_retrace and unwind >= min_unwind * burst volume, then the burst ends; s = d (peak - r0) / r0
    * 1e4 / min_move, x aggravation when unwind >= burst volume. A participant's older bursts stay
    watched when it starts a new run (its unwinding often is one); at most max_active bursts are
    watched, the oldest dropped first.

Evidence (at most MAX_EVIDENCE = 32 event ids and MAX_PARTS = 8 participants per alert)
    spoofing: per counted cancel, newest first, its add id then its cancel id (a participant keeps its
    last RING = 16 spoof-like cancels); layering: the arming trade, then (add, cancel) per counted
    cancel in cancel order (the first 15); wash trading: the cycles of the key (among the last CYC = 64
    cycles), newest first, each its path edges then the closing trade; ramping: the participant's
    (market-wide: every) window trades, newest first; quote stuffing: the last 32 messages, newest
    first; momentum ignition: the first 16 burst trades, then the first 16 unwinding trades.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

ADD, CANCEL, MODIFY, TRADE = 0, 1, 2, 3
DONE, OUT_FULL, GROW = 0, 1, 2
SPOOFING, LAYERING, WASH_TRADING, RAMPING, QUOTE_STUFFING, MOMENTUM_IGNITION = 0, 1, 2, 3, 4, 5
EMPTY = np.iinfo(np.int64).min
NEVER = -1e18  # "long ago" for timestamps kept in float64 state
MAX_EVIDENCE = 32  # event ids per alert
MAX_PARTS = 8  # participants per alert
N_MEASURES = 8
RING = 16  # per-participant evidence ring

# common cfg entries
C_L1, C_L2, C_L3, C_L4, C_AGGR, C_COOL = 0, 1, 2, 3, 4, 5
N_COMMON = 6

# alert buffer info columns
I_DET, I_LEVEL, I_TS, I_START, I_END, I_NPART, I_NEV, I_EID = range(8)


class EventArrays(NamedTuple):
    ts: np.ndarray
    kind: np.ndarray
    oid: np.ndarray
    pid: np.ndarray
    cpid: np.ndarray
    side: np.ndarray
    price: np.ndarray
    size: np.ndarray
    mid: np.ndarray
    eid: np.ndarray


class Table(NamedTuple):
    """Open-addressing hash table int64 key -> float64 row, linear probing, backward-shift delete."""

    keys: np.ndarray  # (cap,) int64, EMPTY where free; cap a power of two
    vals: np.ndarray  # (cap, width) float64
    count: np.ndarray  # (1,) int64
    default: np.ndarray  # (width,) float64: the row of a new key


class AlertBuffer(NamedTuple):
    info: np.ndarray  # (cap, 8) int64: detector, level, ts, start, end, n parts, n events, trigger id
    parts: np.ndarray  # (cap, MAX_PARTS) int64
    events: np.ndarray  # (cap, MAX_EVIDENCE) int64
    measures: np.ndarray  # (cap, N_MEASURES) float64
    n: np.ndarray  # (1,) int64 alerts written


def table_new(width: int, default=None, capacity: int = 1024) -> Table:
    cap = 1 << max(4, int(capacity - 1).bit_length())
    d = np.zeros(width) if default is None else np.asarray(default, np.float64)
    return Table(np.full(cap, EMPTY, np.int64), np.zeros((cap, width)), np.zeros(1, np.int64), d)


def alert_buffer(capacity: int = 256) -> AlertBuffer:
    return AlertBuffer(np.zeros((capacity, 8), np.int64), np.zeros((capacity, MAX_PARTS), np.int64),
                       np.zeros((capacity, MAX_EVIDENCE), np.int64), np.zeros((capacity, N_MEASURES)),
                       np.zeros(1, np.int64))


def grow(table: Table) -> Table:
    """A table of twice the capacity with the same entries."""
    new = table_new(table.vals.shape[1], table.default, 2 * table.keys.size)
    _rehash_nb(table.keys, table.vals, new.keys, new.vals)
    new.count[0] = table.count[0]
    return new


# ---- hash table -------------------------------------------------------------------------------------

@njit(cache=True, nogil=True)
def _home(key, mask):
    x = key * -7046029254386353131  # 0x9E3779B97F4A7C15, wraps
    x ^= x >> 29
    return x & mask


@njit(cache=True, nogil=True)
def _rehash_nb(okeys, ovals, nkeys, nvals):
    mask = nkeys.size - 1
    for i in range(okeys.size):
        k = okeys[i]
        if k == EMPTY:
            continue
        h = _home(k, mask)
        while nkeys[h] != EMPTY:
            h = (h + 1) & mask
        nkeys[h] = k
        for f in range(ovals.shape[1]):
            nvals[h, f] = ovals[i, f]


@njit(cache=True, nogil=True)
def _find(t, key):
    """Slot of `key`, or -1."""
    mask = t.keys.size - 1
    h = _home(key, mask)
    while True:
        k = t.keys[h]
        if k == key:
            return h
        if k == EMPTY:
            return -1
        h = (h + 1) & mask


@njit(cache=True, nogil=True)
def _get(t, key):
    """Slot of `key`, inserted with the default row when new."""
    mask = t.keys.size - 1
    h = _home(key, mask)
    while True:
        k = t.keys[h]
        if k == key:
            return h
        if k == EMPTY:
            t.keys[h] = key
            for f in range(t.default.size):
                t.vals[h, f] = t.default[f]
            t.count[0] += 1
            return h
        h = (h + 1) & mask


@njit(cache=True, nogil=True)
def _delete(t, slot):
    keys, vals = t.keys, t.vals
    mask = keys.size - 1
    i = slot
    j = slot
    while True:
        j = (j + 1) & mask
        if keys[j] == EMPTY:
            break
        k = _home(keys[j], mask)
        stay = (i < k <= j) if i <= j else (k > i or k <= j)
        if not stay:
            keys[i] = keys[j]
            for f in range(vals.shape[1]):
                vals[i, f] = vals[j, f]
            i = j
    keys[i] = EMPTY
    t.count[0] -= 1


@njit(cache=True, nogil=True)
def _full(t):
    return 2 * t.count[0] >= t.keys.size


# ---- shared helpers ---------------------------------------------------------------------------------

@njit(cache=True, nogil=True)
def _ref(sc, i_has, i_ref, kind, price, mid):
    """Update and return the reference price r (sc[i_ref]); sc[i_has] = 1 once a mid was seen."""
    if np.isfinite(mid):
        sc[i_has] = 1.0
        sc[i_ref] = mid
    elif kind == TRADE and sc[i_has] == 0.0:
        sc[i_ref] = price
    return sc[i_ref]


@njit(cache=True, nogil=True)
def _level(cfg, score):
    lv = 0
    for k in range(4):
        if score >= cfg[C_L1 + k]:
            lv = k + 1
    return lv


@njit(cache=True, nogil=True)
def _cool_ok(cfg, last_ts, last_level, now, level):
    return level > 0 and (now - last_ts > cfg[C_COOL] or level > last_level)


@njit(cache=True, nogil=True)
def _emit(out, det, level, ts, start, end, eid):
    r = out.n[0]
    out.n[0] = r + 1
    out.info[r, I_DET] = det
    out.info[r, I_LEVEL] = level
    out.info[r, I_TS] = ts
    out.info[r, I_START] = start
    out.info[r, I_END] = end
    out.info[r, I_NPART] = 0
    out.info[r, I_NEV] = 0
    out.info[r, I_EID] = eid
    out.measures[r, :] = np.nan
    return r


@njit(cache=True, nogil=True)
def _add_part(out, r, p):
    n = out.info[r, I_NPART]
    for k in range(n):
        if out.parts[r, k] == p:
            return
    if n < MAX_PARTS:
        out.parts[r, n] = p
        out.info[r, I_NPART] = n + 1


@njit(cache=True, nogil=True)
def _add_ev(out, r, e):
    n = out.info[r, I_NEV]
    if n < MAX_EVIDENCE:
        out.events[r, n] = e
        out.info[r, I_NEV] = n + 1


@njit(cache=True, nogil=True)
def _si(side):
    """Index of a side: 0 bid / buy, 1 ask / sell."""
    return 0 if side > 0 else 1


# ---- spoofing ---------------------------------------------------------------------------------------
# cfg after COMMON
SP_MULT, SP_ALPHA, SP_DMIN, SP_DMAX, SP_LIFE, SP_FILL, SP_WIN, SP_MIN, SP_WARM = range(N_COMMON, N_COMMON + 9)
# order row
SO_PID, SO_SIDE, SO_PRICE, SO_SIZE, SO_FILLED, SO_TS, SO_DIST, SO_MULT, SO_EID = range(9)
# participant row: head, last trade ts per side (bid, ask), alert ts, alert level, then RING entries of
# (cancel ts, side, add id, cancel id, size, lifetime, distance, size multiple, add ts)
SP_HEAD, SP_TRADE_B, SP_TRADE_A, SP_ALERT_TS, SP_ALERT_LV = range(5)
SP_RING, SP_RF = 5, 9
# scalars
SS_MU, SS_NADD, SS_HAS, SS_REF = range(4)


class SpoofState(NamedTuple):
    orders: Table
    parts: Table
    sc: np.ndarray


def spoofing_init(capacity: int = 1024) -> SpoofState:
    pdef = np.zeros(SP_RING + RING * SP_RF)
    pdef[SP_TRADE_B] = pdef[SP_TRADE_A] = pdef[SP_ALERT_TS] = NEVER
    return SpoofState(table_new(9, None, capacity), table_new(pdef.size, pdef, 256), np.zeros(4))


@njit(cache=True, nogil=True)
def _spoof_cancel(ev, i, cfg, st, out, slot):
    o = st.orders.vals
    pid = int(o[slot, SO_PID])
    side = o[slot, SO_SIDE]
    now = ev.ts[i]
    life = now - o[slot, SO_TS]
    dist = o[slot, SO_DIST]
    like = (o[slot, SO_MULT] >= cfg[SP_MULT] and dist >= cfg[SP_DMIN] and dist <= cfg[SP_DMAX]
            and life <= cfg[SP_LIFE] and o[slot, SO_FILLED] <= cfg[SP_FILL] * o[slot, SO_SIZE])
    size, mult, add_eid, add_ts = o[slot, SO_SIZE], o[slot, SO_MULT], o[slot, SO_EID], o[slot, SO_TS]
    _delete(st.orders, slot)
    if not like:
        return
    ps = _get(st.parts, pid)
    p = st.parts.vals
    head = int(p[ps, SP_HEAD])
    b = SP_RING + (head % RING) * SP_RF
    p[ps, b + 0], p[ps, b + 1], p[ps, b + 2], p[ps, b + 3] = now, side, add_eid, ev.eid[i]
    p[ps, b + 4], p[ps, b + 5], p[ps, b + 6], p[ps, b + 7], p[ps, b + 8] = size, life, dist, mult, add_ts
    p[ps, SP_HEAD] = head + 1
    n = 0
    vol = 0.0
    life_sum = 0.0
    dist_sum = 0.0
    mult_sum = 0.0
    start = now
    for k in range(min(head + 1, RING)):
        b = SP_RING + ((head - k) % RING) * SP_RF
        if p[ps, b + 1] == side and p[ps, b] >= now - cfg[SP_WIN]:
            n += 1
            vol += p[ps, b + 4]
            life_sum += p[ps, b + 5]
            dist_sum += p[ps, b + 6]
            mult_sum += p[ps, b + 7]
            start = min(start, p[ps, b + 8])
    if n < cfg[SP_MIN]:
        return
    opposite = p[ps, SP_TRADE_A] if side > 0 else p[ps, SP_TRADE_B]
    traded = opposite >= start
    score = n / cfg[SP_MIN] * (cfg[C_AGGR] if traded else 1.0)
    lv = _level(cfg, score)
    if not _cool_ok(cfg, p[ps, SP_ALERT_TS], p[ps, SP_ALERT_LV], now, lv):
        return
    p[ps, SP_ALERT_TS] = now
    p[ps, SP_ALERT_LV] = lv
    r = _emit(out, SPOOFING, lv, now, int(start), now, ev.eid[i])
    _add_part(out, r, pid)
    for k in range(min(head + 1, RING)):
        b = SP_RING + ((head - k) % RING) * SP_RF
        if p[ps, b + 1] == side and p[ps, b] >= now - cfg[SP_WIN]:
            _add_ev(out, r, int(p[ps, b + 2]))
            _add_ev(out, r, int(p[ps, b + 3]))
    m = out.measures
    m[r, 0], m[r, 1], m[r, 2], m[r, 3] = n, vol, mult_sum / n, life_sum / n
    m[r, 4], m[r, 5], m[r, 6] = dist_sum / n, 1.0 if traded else 0.0, side


@njit(cache=True, nogil=True)
def spoofing_nb(ev, start, cfg, st, out):
    sc = st.sc
    o = st.orders
    for i in range(start, ev.ts.size):
        if out.n[0] >= out.info.shape[0]:
            return i, OUT_FULL
        if _full(o) or _full(st.parts):
            return i, GROW
        kind = ev.kind[i]
        ref = _ref(sc, SS_HAS, SS_REF, kind, ev.price[i], ev.mid[i])
        oid = ev.oid[i]
        if kind == ADD:
            size = ev.size[i]
            mult = size / np.exp(sc[SS_MU]) if sc[SS_NADD] >= cfg[SP_WARM] else 0.0
            sc[SS_NADD] += 1.0
            sc[SS_MU] += max(cfg[SP_ALPHA], 1.0 / sc[SS_NADD]) * (np.log(size) - sc[SS_MU])
            if oid < 0 or ev.pid[i] < 0:
                continue
            s = _get(o, oid)
            v = o.vals
            v[s, SO_PID], v[s, SO_SIDE], v[s, SO_PRICE], v[s, SO_SIZE] = ev.pid[i], ev.side[i], ev.price[i], size
            v[s, SO_FILLED], v[s, SO_TS], v[s, SO_MULT], v[s, SO_EID] = 0.0, ev.ts[i], mult, ev.eid[i]
            v[s, SO_DIST] = abs(ev.price[i] - ref) / ref * 1e4 if ref > 0 else np.nan
        elif kind == CANCEL or kind == MODIFY:
            if oid < 0:
                continue
            s = _find(o, oid)
            if s < 0:
                continue
            if kind == CANCEL or ev.size[i] <= 0.0:
                _spoof_cancel(ev, i, cfg, st, out, s)
            else:
                v = o.vals
                v[s, SO_PRICE] = ev.price[i]
                v[s, SO_SIZE] = ev.size[i] + v[s, SO_FILLED]
                v[s, SO_MULT] = ev.size[i] / np.exp(sc[SS_MU]) if sc[SS_NADD] >= cfg[SP_WARM] else 0.0
                v[s, SO_DIST] = abs(ev.price[i] - ref) / ref * 1e4 if ref > 0 else np.nan
        else:  # TRADE
            if oid >= 0:
                s = _find(o, oid)
                if s >= 0:
                    o.vals[s, SO_FILLED] += ev.size[i]
                    if o.vals[s, SO_FILLED] >= o.vals[s, SO_SIZE]:
                        _delete(o, s)
            # the last trade time per side of the taker and the maker (aggravation)
            if ev.pid[i] >= 0:
                st.parts.vals[_get(st.parts, ev.pid[i]), SP_TRADE_B if ev.side[i] > 0 else SP_TRADE_A] = ev.ts[i]
            if ev.cpid[i] >= 0:
                st.parts.vals[_get(st.parts, ev.cpid[i]), SP_TRADE_A if ev.side[i] > 0 else SP_TRADE_B] = ev.ts[i]
    return ev.ts.size, DONE


# ---- layering ---------------------------------------------------------------------------------------
LA_MIN, LA_SHARE, LA_IMB, LA_STACK, LA_CANCEL = range(N_COMMON, N_COMMON + 5)
LO_PID, LO_SIDE, LO_REM, LO_TS, LO_EID = range(5)
# participant row: live count (bid, ask), live volume (bid, ask), one block per stacked side, alert ts/level
LP_CNT, LP_VOL = 0, 2
LB_ARMED, LB_TS, LB_EID, LB_CNT, LB_VOL, LB_OPP, LB_N, LB_NVOL, LB_FIRST, LB_DELAY, LB_RING = range(11)
LB_PAIRS = 15  # (add id, cancel id) pairs kept per block
LB_SIZE = LB_RING + 2 * LB_PAIRS
LP_BLOCK = 4
LP_ALERT_TS = LP_BLOCK + 2 * LB_SIZE
LP_ALERT_LV = LP_ALERT_TS + 1
LP_WIDTH = LP_ALERT_LV + 1


class LayerState(NamedTuple):
    orders: Table
    parts: Table


def layering_init(capacity: int = 1024) -> LayerState:
    pdef = np.zeros(LP_WIDTH)
    pdef[LP_ALERT_TS] = NEVER
    return LayerState(table_new(5, None, capacity), table_new(LP_WIDTH, pdef, 256))


@njit(cache=True, nogil=True)
def _layer_live(p, ps, si, dcount, dvol):
    p[ps, LP_CNT + si] += dcount
    p[ps, LP_VOL + si] += dvol
    if p[ps, LP_CNT + si] <= 0:  # no float residue once the side is empty
        p[ps, LP_CNT + si] = 0.0
        p[ps, LP_VOL + si] = 0.0


@njit(cache=True, nogil=True)
def _layer_cancel(ev, i, cfg, st, out, slot):
    o = st.orders.vals
    pid = int(o[slot, LO_PID])
    si = _si(o[slot, LO_SIDE])
    rem, add_ts, add_eid = o[slot, LO_REM], o[slot, LO_TS], o[slot, LO_EID]
    _delete(st.orders, slot)
    ps = _find(st.parts, pid)
    p = st.parts.vals
    _layer_live(p, ps, si, -1.0, -rem)
    b = LP_BLOCK + si * LB_SIZE
    now = ev.ts[i]
    t_tr = p[ps, b + LB_TS]
    if not (p[ps, b + LB_ARMED] > 0 and now - t_tr <= cfg[LA_CANCEL] and add_ts <= t_tr
            and t_tr - add_ts <= cfg[LA_STACK]):
        return
    n = int(p[ps, b + LB_N])
    if n < LB_PAIRS:
        p[ps, b + LB_RING + 2 * n] = add_eid
        p[ps, b + LB_RING + 2 * n + 1] = ev.eid[i]
    n += 1
    p[ps, b + LB_N] = n
    p[ps, b + LB_NVOL] += rem
    p[ps, b + LB_FIRST] = min(p[ps, b + LB_FIRST], add_ts)
    p[ps, b + LB_DELAY] = max(p[ps, b + LB_DELAY], now - t_tr)
    if n < cfg[LA_MIN] or n < cfg[LA_SHARE] * p[ps, b + LB_CNT]:
        return
    lv = _level(cfg, n / cfg[LA_MIN])
    if not _cool_ok(cfg, p[ps, LP_ALERT_TS], p[ps, LP_ALERT_LV], now, lv):
        return
    p[ps, LP_ALERT_TS] = now
    p[ps, LP_ALERT_LV] = lv
    r = _emit(out, LAYERING, lv, now, int(p[ps, b + LB_FIRST]), now, ev.eid[i])
    _add_part(out, r, pid)
    _add_ev(out, r, int(p[ps, b + LB_EID]))
    for k in range(min(n, LB_PAIRS)):
        _add_ev(out, r, int(p[ps, b + LB_RING + 2 * k]))
        _add_ev(out, r, int(p[ps, b + LB_RING + 2 * k + 1]))
    m = out.measures
    vol, opp = p[ps, b + LB_VOL], p[ps, b + LB_OPP]
    m[r, 0], m[r, 1], m[r, 2], m[r, 3] = n, p[ps, b + LB_CNT], vol, vol / (vol + opp)
    m[r, 4], m[r, 5], m[r, 6] = p[ps, b + LB_NVOL], p[ps, b + LB_DELAY], 1.0 if si == 0 else -1.0


@njit(cache=True, nogil=True)
def _layer_trade(cfg, st, who, trade_side, now, eid):
    """`who` traded on `trade_side`: arm (or keep armed) its stack on the other side."""
    ps = _get(st.parts, who)
    p = st.parts.vals
    s = _si(-trade_side)
    x = _si(trade_side)
    b = LP_BLOCK + s * LB_SIZE
    if p[ps, b + LB_ARMED] > 0 and now - p[ps, b + LB_TS] <= cfg[LA_CANCEL]:
        return  # already armed by an earlier trade whose cancel window is still open
    cnt, vol, opp = p[ps, LP_CNT + s], p[ps, LP_VOL + s], p[ps, LP_VOL + x]
    if cnt >= cfg[LA_MIN] and vol > 0 and vol >= cfg[LA_IMB] * opp:
        p[ps, b + LB_ARMED], p[ps, b + LB_TS], p[ps, b + LB_EID] = 1.0, now, eid
        p[ps, b + LB_CNT], p[ps, b + LB_VOL], p[ps, b + LB_OPP] = cnt, vol, opp
        p[ps, b + LB_N], p[ps, b + LB_NVOL], p[ps, b + LB_FIRST], p[ps, b + LB_DELAY] = 0.0, 0.0, now, 0.0
    else:
        p[ps, b + LB_ARMED] = 0.0


@njit(cache=True, nogil=True)
def layering_nb(ev, start, cfg, st, out):
    o = st.orders
    for i in range(start, ev.ts.size):
        if out.n[0] >= out.info.shape[0]:
            return i, OUT_FULL
        if _full(o) or _full(st.parts):
            return i, GROW
        kind = ev.kind[i]
        oid = ev.oid[i]
        if kind == ADD:
            if oid < 0 or ev.pid[i] < 0:
                continue
            s = _find(o, oid)
            if s >= 0:  # an id used again: the old order is gone
                ps = _find(st.parts, int(o.vals[s, LO_PID]))
                _layer_live(st.parts.vals, ps, _si(o.vals[s, LO_SIDE]), -1.0, -o.vals[s, LO_REM])
                _delete(o, s)
            s = _get(o, oid)
            v = o.vals
            v[s, LO_PID], v[s, LO_SIDE], v[s, LO_REM] = ev.pid[i], ev.side[i], ev.size[i]
            v[s, LO_TS], v[s, LO_EID] = ev.ts[i], ev.eid[i]
            ps = _get(st.parts, ev.pid[i])
            _layer_live(st.parts.vals, ps, _si(ev.side[i]), 1.0, ev.size[i])
        elif kind == CANCEL or kind == MODIFY:
            if oid < 0:
                continue
            s = _find(o, oid)
            if s < 0:
                continue
            if kind == CANCEL or ev.size[i] <= 0.0:
                _layer_cancel(ev, i, cfg, st, out, s)
            else:
                ps = _find(st.parts, int(o.vals[s, LO_PID]))
                _layer_live(st.parts.vals, ps, _si(o.vals[s, LO_SIDE]), 0.0, ev.size[i] - o.vals[s, LO_REM])
                o.vals[s, LO_REM] = ev.size[i]
        else:  # TRADE: fill the maker's order, then arm taker and maker
            if oid >= 0:
                s = _find(o, oid)
                if s >= 0:
                    ps = _find(st.parts, int(o.vals[s, LO_PID]))
                    si = _si(o.vals[s, LO_SIDE])
                    fill = min(ev.size[i], o.vals[s, LO_REM])
                    o.vals[s, LO_REM] -= fill
                    if o.vals[s, LO_REM] <= 0.0:
                        _layer_live(st.parts.vals, ps, si, -1.0, -fill)
                        _delete(o, s)
                    else:
                        _layer_live(st.parts.vals, ps, si, 0.0, -fill)
            if ev.pid[i] >= 0:
                _layer_trade(cfg, st, ev.pid[i], ev.side[i], ev.ts[i], ev.eid[i])
            if ev.cpid[i] >= 0:
                _layer_trade(cfg, st, ev.cpid[i], -ev.side[i], ev.ts[i], ev.eid[i])
    return ev.ts.size, DONE


# ---- wash trading -----------------------------------------------------------------------------------
WA_WIN, WA_TOL, WA_MAXC, WA_MIN, WA_CYCLE = range(N_COMMON, N_COMMON + 5)
E_TS, E_SN, E_BN, E_SP, E_BP, E_EID = range(6)  # edge: ts, seller node, buyer node, seller, buyer, id
CYC = 64  # cycles kept
CY_KEY, CY_TS, CY_START, CY_LEN, CY_EIDS, CY_PARTS = 0, 1, 2, 3, 4, 8  # eids 4..7, participants 8..15
CY_WIDTH = 16
W_ALERT_TS, W_ALERT_LV = 0, 1


class WashState(NamedTuple):
    groups: Table  # participant -> node (the smallest id of its linked group)
    edges: np.ndarray  # (max_edges, 6) int64
    esize: np.ndarray  # (max_edges,) float64
    cycles: np.ndarray  # (CYC, CY_WIDTH) int64
    cvol: np.ndarray  # (CYC,) float64: volume of each cycle
    heads: np.ndarray  # (2,) int64: edges pushed, cycles pushed
    cool: Table  # cycle key -> (alert ts, alert level)
    cand: np.ndarray  # (max_edges,) int64 scratch
    tmp: np.ndarray  # (8,) int64 scratch


def wash_init(max_edges: int, linked_groups=()) -> WashState:
    groups = table_new(1, None, 2 * sum(len(g) for g in linked_groups) + 16)
    for g in linked_groups:
        rep = min(g)
        for pid in g:
            groups.vals[_get(groups, int(pid)), 0] = rep
    cdef = np.array([NEVER, 0.0])
    return WashState(groups, np.zeros((max_edges, 6), np.int64), np.zeros(max_edges),
                     np.zeros((CYC, CY_WIDTH), np.int64), np.zeros(CYC), np.zeros(2, np.int64),
                     table_new(2, cdef, 64), np.zeros(max_edges, np.int64), np.zeros(8, np.int64))


@njit(cache=True, nogil=True)
def _node(groups, p):
    s = _find(groups, p)
    return int(groups.vals[s, 0]) if s >= 0 else p


@njit(cache=True, nogil=True)
def _cycle_key(tmp, n):
    """FNV-1a style fold of the n node ids in tmp[:n] after sorting them (int64, wrapping)."""
    for a in range(1, n):  # insertion sort
        x = tmp[a]
        b = a - 1
        while b >= 0 and tmp[b] > x:
            tmp[b + 1] = tmp[b]
            b -= 1
        tmp[b + 1] = x
    h = np.int64(-3750763034362895579)  # 14695981039346656037 as int64
    for a in range(n):
        h = (h ^ tmp[a]) * np.int64(1099511628211)
    return h if h != EMPTY else np.int64(0)


@njit(cache=True, nogil=True)
def _wash_search(st, nc, u, v, maxc):
    """Shortest time-ordered path v -> ... -> u over the candidate edges; returns (length of the cycle,
    candidate positions a, b, c of its edges), length 0 when there is none."""
    e, cand = st.edges, st.cand
    for a in range(nc):
        ea = cand[a]
        if e[ea, E_SN] == v and e[ea, E_BN] == u:
            return 2, a, -1, -1
    if maxc >= 3:
        for a in range(nc):
            ea = cand[a]
            x1 = e[ea, E_BN]
            if e[ea, E_SN] != v or x1 == u or x1 == v:
                continue
            for b in range(a + 1, nc):
                eb = cand[b]
                if e[eb, E_SN] == x1 and e[eb, E_BN] == u:
                    return 3, a, b, -1
    if maxc >= 4:
        for a in range(nc):
            ea = cand[a]
            x1 = e[ea, E_BN]
            if e[ea, E_SN] != v or x1 == u or x1 == v:
                continue
            for b in range(a + 1, nc):
                eb = cand[b]
                x2 = e[eb, E_BN]
                if e[eb, E_SN] != x1 or x2 == u or x2 == v or x2 == x1:
                    continue
                for c in range(b + 1, nc):
                    ec = cand[c]
                    if e[ec, E_SN] == x2 and e[ec, E_BN] == u:
                        return 4, a, b, c
    return 0, -1, -1, -1


@njit(cache=True, nogil=True)
def _cycle_add_part(cy, row, p):
    for k in range(CY_PARTS, CY_WIDTH):
        if cy[row, k] == p:
            return
        if cy[row, k] == -1:
            cy[row, k] = p
            return


@njit(cache=True, nogil=True)
def _wash_push(st, now, u, v, seller, buyer, eid, q):
    """The new edge joins the graph (overwriting the oldest when the ring is full)."""
    e = st.edges
    j = st.heads[0] % e.shape[0]
    e[j, E_TS], e[j, E_SN], e[j, E_BN], e[j, E_SP], e[j, E_BP], e[j, E_EID] = now, u, v, seller, buyer, eid
    st.esize[j] = q
    st.heads[0] += 1


@njit(cache=True, nogil=True)
def wash_trading_nb(ev, start, cfg, st, out):
    e, m_edges = st.edges, st.edges.shape[0]
    cy = st.cycles
    win = cfg[WA_WIN]
    maxc = int(cfg[WA_MAXC])
    for i in range(start, ev.ts.size):
        if out.n[0] >= out.info.shape[0]:
            return i, OUT_FULL
        if _full(st.cool):
            return i, GROW
        if ev.kind[i] != TRADE or ev.pid[i] < 0 or ev.cpid[i] < 0:
            continue
        now, q = ev.ts[i], ev.size[i]
        if ev.side[i] > 0:
            seller, buyer = ev.cpid[i], ev.pid[i]
        else:
            seller, buyer = ev.pid[i], ev.cpid[i]
        u, v = _node(st.groups, seller), _node(st.groups, buyer)
        length, a, b, c = 0, -1, -1, -1
        if u == v:
            length = 1
        elif maxc >= 2:
            nc = 0
            total = st.heads[0]
            for k in range(max(0, total - m_edges), total):
                j = k % m_edges
                if e[j, E_TS] >= now - cfg[WA_CYCLE] and abs(st.esize[j] - q) <= cfg[WA_TOL] * q:
                    st.cand[nc] = j
                    nc += 1
            length, a, b, c = _wash_search(st, nc, u, v, maxc)
        if length == 0:
            _wash_push(st, now, u, v, seller, buyer, ev.eid[i], q)
            continue
        # record the cycle (before the new edge may overwrite the oldest one): nodes, edges, participants
        row = st.heads[1] % CYC
        st.heads[1] += 1
        cy[row, :] = -1
        cy[row, CY_TS], cy[row, CY_LEN] = now, length
        st.tmp[0], st.tmp[1] = u, v
        vol = q
        first = now
        k = 0
        for pos in (a, b, c):
            if pos >= 0:
                ej = st.cand[pos]
                cy[row, CY_EIDS + k] = e[ej, E_EID]
                _cycle_add_part(cy, row, e[ej, E_SP])
                _cycle_add_part(cy, row, e[ej, E_BP])
                if k < length - 2:  # the inner nodes x1, x2 (the path's last edge ends at u)
                    st.tmp[k + 2] = e[ej, E_BN]
                vol += st.esize[ej]
                first = min(first, e[ej, E_TS])
                k += 1
        cy[row, CY_EIDS + k] = ev.eid[i]
        _cycle_add_part(cy, row, seller)
        _cycle_add_part(cy, row, buyer)
        cy[row, CY_START] = first
        st.cvol[row] = vol
        key = _cycle_key(st.tmp, length)
        cy[row, CY_KEY] = key
        _wash_push(st, now, u, v, seller, buyer, ev.eid[i], q)
        # count the cycles of this node set in the window
        n = 0
        total_vol = 0.0
        earliest = now
        for back in range(min(st.heads[1], CYC)):
            rr = (st.heads[1] - 1 - back) % CYC
            if cy[rr, CY_KEY] == key and cy[rr, CY_TS] >= now - win:
                n += 1
                total_vol += st.cvol[rr]
                earliest = min(earliest, cy[rr, CY_START])
        if n < cfg[WA_MIN]:
            continue
        lv = _level(cfg, n / cfg[WA_MIN])
        cs = _get(st.cool, key)
        if not _cool_ok(cfg, st.cool.vals[cs, W_ALERT_TS], st.cool.vals[cs, W_ALERT_LV], now, lv):
            continue
        st.cool.vals[cs, W_ALERT_TS] = now
        st.cool.vals[cs, W_ALERT_LV] = lv
        r = _emit(out, WASH_TRADING, lv, now, earliest, now, ev.eid[i])
        for back in range(min(st.heads[1], CYC)):
            rr = (st.heads[1] - 1 - back) % CYC
            if cy[rr, CY_KEY] == key and cy[rr, CY_TS] >= now - win:
                for kk in range(CY_PARTS, CY_WIDTH):
                    if cy[rr, kk] >= 0:
                        _add_part(out, r, cy[rr, kk])
                for kk in range(CY_EIDS, CY_EIDS + cy[rr, CY_LEN]):
                    _add_ev(out, r, cy[rr, kk])
        m = out.measures
        m[r, 0], m[r, 1], m[r, 2], m[r, 3], m[r, 4] = n, length, total_vol, now - earliest, q
    return ev.ts.size, DONE


# ---- ramping ----------------------------------------------------------------------------------------
RA_BUCKET, RA_W, RA_ALPHA, RA_WARM, RA_Z, RA_VR, RA_DIR, RA_SHARE, RA_NMIN = range(N_COMMON, N_COMMON + 9)
RS_HAS, RS_REF, RS_STARTED, RS_CUR, RS_FIRST, RS_NU, RS_VAR, RS_NCLOSED, RS_LAST = range(9)
T_PID, T_SIDE, T_EID, T_B, T_TS = range(5)
RP_VOL, RP_N, RP_ALERT_TS, RP_ALERT_LV = 0, 2, 4, 5  # volume and count per side (buy, sell)


class RampState(NamedTuple):
    sc: np.ndarray  # (9,) scalars
    bclose: np.ndarray  # (W + 1,) r at the last trade of each bucket
    bvol: np.ndarray  # (W + 1,) volume per bucket
    bbuy: np.ndarray  # (W + 1,) buyer-initiated volume per bucket
    bsell: np.ndarray  # (W + 1,) seller-initiated volume per bucket
    trades: np.ndarray  # (max_trades, 5) int64 ring of the window's trades
    tsize: np.ndarray  # (max_trades,) float64
    theads: np.ndarray  # (2,) int64: pushed, expired
    parts: Table  # participant -> window aggressive volume and trades per side, alert ts / level


def ramping_init(window_buckets: int, max_trades: int) -> RampState:
    w1 = int(window_buckets) + 1
    pdef = np.array([0.0, 0.0, 0.0, 0.0, NEVER, 0.0])
    return RampState(np.zeros(9), np.zeros(w1), np.zeros(w1), np.zeros(w1), np.zeros(w1),
                     np.zeros((int(max_trades), 5), np.int64), np.zeros(int(max_trades)), np.zeros(2, np.int64),
                     table_new(6, pdef, 256))


@njit(cache=True, nogil=True)
def _ramp_push(sc, a, vol, g, has_return):
    """One closed bucket into the baseline: running means until 1/a buckets, then EWMAs of weight a."""
    sc[RS_NCLOSED] += 1
    n = sc[RS_NCLOSED]
    sc[RS_NU] += max(a, 1.0 / n) * (vol - sc[RS_NU])
    if has_return:
        sc[RS_VAR] += max(a, 1.0 / (n - 1.0)) * (g * g - sc[RS_VAR])


@njit(cache=True, nogil=True)
def _ramp_close(cfg, st, b):
    """Close the current bucket (and the empty ones before bucket b) into the baseline."""
    sc = st.sc
    w1 = st.bvol.size
    a = cfg[RA_ALPHA]
    cur = int(sc[RS_CUR])
    vol_c, close_c = st.bvol[cur % w1], st.bclose[cur % w1]
    first = sc[RS_NCLOSED] == 0
    _ramp_push(sc, a, vol_c, 0.0 if first else np.log(close_c / sc[RS_LAST]), not first)
    sc[RS_LAST] = close_c
    for j in range(cur + 1, b):  # empty buckets: volume 0, return 0
        _ramp_push(sc, a, 0.0, 0.0, True)
    for j in range(max(cur + 1, b - w1 + 1), b):
        st.bclose[j % w1], st.bvol[j % w1], st.bbuy[j % w1], st.bsell[j % w1] = close_c, 0.0, 0.0, 0.0
    sc[RS_CUR] = b
    st.bclose[b % w1], st.bvol[b % w1], st.bbuy[b % w1], st.bsell[b % w1] = np.nan, 0.0, 0.0, 0.0


@njit(cache=True, nogil=True)
def _ramp_expire(st, oldest_bucket, force):
    """Drop window trades of buckets before `oldest_bucket` (and the oldest one when `force`)."""
    t, cap = st.trades, st.trades.shape[0]
    while st.theads[1] < st.theads[0]:
        j = st.theads[1] % cap
        if t[j, T_B] >= oldest_bucket and not force:
            break
        force = False
        if t[j, T_PID] >= 0:
            ps = _find(st.parts, t[j, T_PID])
            s = _si(t[j, T_SIDE])
            v = st.parts.vals
            v[ps, RP_VOL + s] -= st.tsize[j]
            v[ps, RP_N + s] -= 1.0
            if v[ps, RP_N + s] <= 0:
                v[ps, RP_N + s] = 0.0
                v[ps, RP_VOL + s] = 0.0
        st.theads[1] += 1


@njit(cache=True, nogil=True)
def ramping_nb(ev, start, cfg, st, out):
    sc = st.sc
    w = int(cfg[RA_W])
    w1 = w + 1
    bucket = int(cfg[RA_BUCKET])
    cap = st.trades.shape[0]
    for i in range(start, ev.ts.size):
        if out.n[0] >= out.info.shape[0]:
            return i, OUT_FULL
        if _full(st.parts):
            return i, GROW
        kind = ev.kind[i]
        r = _ref(sc, RS_HAS, RS_REF, kind, ev.price[i], ev.mid[i])
        if kind != TRADE:
            continue
        now, q, side, pid = ev.ts[i], ev.size[i], ev.side[i], ev.pid[i]
        b = now // bucket
        if sc[RS_STARTED] == 0:
            sc[RS_STARTED], sc[RS_CUR], sc[RS_FIRST] = 1.0, b, b
            st.bclose[b % w1], st.bvol[b % w1], st.bbuy[b % w1], st.bsell[b % w1] = np.nan, 0.0, 0.0, 0.0
        elif b > sc[RS_CUR]:
            _ramp_close(cfg, st, b)
        j = b % w1
        st.bvol[j] += q
        if side > 0:
            st.bbuy[j] += q
        else:
            st.bsell[j] += q
        st.bclose[j] = r
        # the window's trades per participant
        _ramp_expire(st, b - w + 1, st.theads[0] - st.theads[1] >= cap)
        k = st.theads[0] % cap
        st.trades[k, T_PID], st.trades[k, T_SIDE], st.trades[k, T_EID] = pid, side, ev.eid[i]
        st.trades[k, T_B], st.trades[k, T_TS] = b, now
        st.tsize[k] = q
        st.theads[0] += 1
        ps = -1
        if pid >= 0:
            ps = _get(st.parts, pid)
            st.parts.vals[ps, RP_VOL + _si(side)] += q
            st.parts.vals[ps, RP_N + _si(side)] += 1.0
        # the move over the window
        if sc[RS_NCLOSED] < cfg[RA_WARM] or b - w < sc[RS_FIRST] or sc[RS_VAR] <= 0 or sc[RS_NU] <= 0:
            continue
        ret = np.log(r / st.bclose[(b - w) % w1])
        if ret == 0 or not np.isfinite(ret):
            continue
        d = 1 if ret > 0 else -1
        if pid >= 0 and side != d:
            continue
        z = abs(ret) / np.sqrt(sc[RS_VAR] * w)
        if z < cfg[RA_Z]:
            continue
        vol = 0.0
        vdir = 0.0
        for jj in range(b - w + 1, b + 1):
            vol += st.bvol[jj % w1]
            vdir += st.bbuy[jj % w1] if d > 0 else st.bsell[jj % w1]
        vr = vol / (sc[RS_NU] * w)
        direction = vdir / vol
        if vr < cfg[RA_VR] or direction < cfg[RA_DIR]:
            continue
        share = np.nan
        n_p = np.nan
        if pid >= 0:
            share = st.parts.vals[ps, RP_VOL + _si(d)] / vdir
            n_p = st.parts.vals[ps, RP_N + _si(d)]
            if share < cfg[RA_SHARE] or n_p < cfg[RA_NMIN]:
                continue
        else:
            ps = _get(st.parts, -1)  # the market-wide key
        lv = _level(cfg, min(z / cfg[RA_Z], vr / cfg[RA_VR]))
        pv = st.parts.vals
        if not _cool_ok(cfg, pv[ps, RP_ALERT_TS], pv[ps, RP_ALERT_LV], now, lv):
            continue
        pv[ps, RP_ALERT_TS] = now
        pv[ps, RP_ALERT_LV] = lv
        first = now
        for kk in range(st.theads[1], st.theads[0]):
            jj = kk % cap
            if pid < 0 or st.trades[jj, T_PID] == pid:
                first = min(first, st.trades[jj, T_TS])
        rr = _emit(out, RAMPING, lv, now, first, now, ev.eid[i])
        if pid >= 0:
            _add_part(out, rr, pid)
        kk = st.theads[0] - 1
        while kk >= st.theads[1] and out.info[rr, I_NEV] < MAX_EVIDENCE:
            jj = kk % cap
            if pid < 0 or st.trades[jj, T_PID] == pid:
                _add_ev(out, rr, st.trades[jj, T_EID])
            kk -= 1
        m = out.measures
        m[rr, 0], m[rr, 1], m[rr, 2], m[rr, 3] = ret * 1e4, z, vr, direction
        m[rr, 4], m[rr, 5], m[rr, 6] = share, n_p, vol
    return ev.ts.size, DONE


# ---- quote stuffing ---------------------------------------------------------------------------------
QS_FAST, QS_SLOW, QS_MIN, QS_RATIO, QS_TR = range(N_COMMON, N_COMMON + 5)
Q_F, Q_S, Q_K, Q_T, Q_B, Q_H, Q_ALERT_TS, Q_ALERT_LV, Q_RING = range(9)
Q_WIDTH = Q_RING + MAX_EVIDENCE


class StuffState(NamedTuple):
    parts: Table  # participant (-1: unknown) -> decayed counts, burst start, recent message ids


def quote_stuffing_init() -> StuffState:
    pdef = np.zeros(Q_WIDTH)
    pdef[Q_T] = pdef[Q_ALERT_TS] = NEVER
    return StuffState(table_new(Q_WIDTH, pdef, 256))


@njit(cache=True, nogil=True)
def _qs_decay(cfg, v, s, now):
    dt = now - v[s, Q_T]
    v[s, Q_F] *= np.exp(-dt / cfg[QS_FAST])
    v[s, Q_S] *= np.exp(-dt / cfg[QS_SLOW])
    v[s, Q_K] *= np.exp(-dt / cfg[QS_FAST])
    v[s, Q_T] = now


@njit(cache=True, nogil=True)
def quote_stuffing_nb(ev, start, cfg, st, out):
    t = st.parts
    for i in range(start, ev.ts.size):
        if out.n[0] >= out.info.shape[0]:
            return i, OUT_FULL
        if _full(t):
            return i, GROW
        now, pid = ev.ts[i], ev.pid[i]
        v = t.vals
        if ev.kind[i] == TRADE:
            s = _get(t, pid)
            _qs_decay(cfg, v, s, now)
            v[s, Q_K] += 1.0
            if ev.cpid[i] >= 0 and ev.cpid[i] != pid:
                s = _get(t, ev.cpid[i])
                _qs_decay(cfg, v, s, now)
                v[s, Q_K] += 1.0
            continue
        s = _get(t, pid)
        _qs_decay(cfg, v, s, now)
        if v[s, Q_F] < 0.5:  # quiet before: nothing within about fast_ms ln 2
            v[s, Q_B] = now
        v[s, Q_F] += 1.0
        v[s, Q_S] += 1.0
        h = int(v[s, Q_H])
        v[s, Q_RING + h % MAX_EVIDENCE] = ev.eid[i]
        v[s, Q_H] = h + 1
        f = v[s, Q_F]
        ratio = (f / cfg[QS_FAST]) / (v[s, Q_S] / cfg[QS_SLOW])
        share = v[s, Q_K] / f
        if f < cfg[QS_MIN] or ratio < cfg[QS_RATIO] or share > cfg[QS_TR]:
            continue
        lv = _level(cfg, f / cfg[QS_MIN])
        if not _cool_ok(cfg, v[s, Q_ALERT_TS], v[s, Q_ALERT_LV], now, lv):
            continue
        v[s, Q_ALERT_TS] = now
        v[s, Q_ALERT_LV] = lv
        r = _emit(out, QUOTE_STUFFING, lv, now, int(v[s, Q_B]), now, ev.eid[i])
        if pid >= 0:
            _add_part(out, r, pid)
        for k in range(min(h + 1, MAX_EVIDENCE)):
            _add_ev(out, r, int(v[s, Q_RING + (h - k) % MAX_EVIDENCE]))
        m = out.measures
        m[r, 0], m[r, 1], m[r, 2], m[r, 3], m[r, 4] = f, ratio, share, now - v[s, Q_B], v[s, Q_S]
    return ev.ts.size, DONE


# ---- momentum ignition ------------------------------------------------------------------------------
MI_GAP, MI_NMIN, MI_MOVE, MI_WIN, MI_RET, MI_UNW, MI_SHARE = range(N_COMMON, N_COMMON + 7)
MS_HAS, MS_REF, MS_NACT, MS_SEQ, MS_CUM = 0, 1, 2, 3, 4  # MS_CUM + side index: aggressive volume so far
M_DIR, M_N, M_VOL, M_TS, M_PX, M_LAST, M_ACT, M_ALERT_TS, M_ALERT_LV, M_CUM0, M_RING = range(11)
M_WIDTH = M_RING + RING
A_DIR, A_PX, A_PEAK, A_VOL, A_N, A_UNW, A_SEQ, A_USED, A_SHARE, A_RET = range(10)
AI_PID, AI_TS, AI_END, AI_NUNW = range(4)


class IgniteState(NamedTuple):
    sc: np.ndarray  # (6,) has mid, r, active bursts, sequence, aggressive buy and sell volume so far
    parts: Table  # participant -> current run, its active burst slot, alert ts / level, run ids
    af: np.ndarray  # (max_active, 10) float64 per burst
    ai: np.ndarray  # (max_active, 4) int64 per burst
    ae: np.ndarray  # (max_active, 2 RING) int64: burst ids then unwind ids


def momentum_ignition_init(max_active: int) -> IgniteState:
    pdef = np.zeros(M_WIDTH)
    pdef[M_LAST] = pdef[M_ALERT_TS] = NEVER
    pdef[M_ACT] = -1.0
    a = int(max_active)
    return IgniteState(np.zeros(6), table_new(M_WIDTH, pdef, 256), np.zeros((a, 10)), np.zeros((a, 4), np.int64),
                       np.zeros((a, 2 * RING), np.int64))


@njit(cache=True, nogil=True)
def _mi_free(st, a):
    st.af[a, A_USED] = 0.0
    st.sc[MS_NACT] -= 1
    ps = _find(st.parts, st.ai[a, AI_PID])
    if ps >= 0 and st.parts.vals[ps, M_ACT] == a:
        st.parts.vals[ps, M_ACT] = -1.0


@njit(cache=True, nogil=True)
def _mi_burst(st, ps, pid, r, share):
    """Open or update the active burst of the run in row ps (its move is past the threshold)."""
    p = st.parts.vals
    a = int(p[ps, M_ACT])
    if not (a >= 0 and st.af[a, A_USED] > 0 and st.ai[a, AI_TS] == p[ps, M_TS] and st.af[a, A_DIR] == p[ps, M_DIR]):
        # a new burst; an earlier one of the participant stays watched until it fires or expires
        a = -1
        oldest = -1
        for k in range(st.af.shape[0]):
            if st.af[k, A_USED] == 0:
                a = k
                break
            if oldest < 0 or st.af[k, A_SEQ] < st.af[oldest, A_SEQ]:
                oldest = k
        if a < 0:
            _mi_free(st, oldest)
            a = oldest
        st.sc[MS_NACT] += 1
        st.sc[MS_SEQ] += 1
        st.af[a, A_USED], st.af[a, A_SEQ], st.af[a, A_DIR] = 1.0, st.sc[MS_SEQ], p[ps, M_DIR]
        st.af[a, A_PX], st.af[a, A_PEAK], st.af[a, A_UNW], st.af[a, A_RET] = p[ps, M_PX], r, 0.0, 0.0
        st.ai[a, AI_PID], st.ai[a, AI_TS], st.ai[a, AI_NUNW] = pid, int(p[ps, M_TS]), 0
        p[ps, M_ACT] = a
    d = st.af[a, A_DIR]
    if d * (r - st.af[a, A_PEAK]) > 0:
        st.af[a, A_PEAK] = r
    st.af[a, A_VOL], st.af[a, A_N], st.af[a, A_SHARE] = p[ps, M_VOL], p[ps, M_N], share
    st.ai[a, AI_END] = int(p[ps, M_LAST])
    for k in range(min(int(p[ps, M_N]), RING)):
        st.ae[a, k] = int(p[ps, M_RING + k])


@njit(cache=True, nogil=True)
def _mi_unwind(cfg, st, who, trade_side, q, now, eid):
    """`who` traded `q` on `trade_side`: unwinding for each of its watched bursts in the other direction."""
    for a in range(st.af.shape[0]):
        if st.af[a, A_USED] == 0 or st.ai[a, AI_PID] != who or st.af[a, A_DIR] != -trade_side \
                or now - st.ai[a, AI_END] > cfg[MI_WIN]:
            continue
        st.af[a, A_UNW] += q
        n = st.ai[a, AI_NUNW]
        if n < RING:
            st.ae[a, RING + n] = eid
            st.ai[a, AI_NUNW] = n + 1


@njit(cache=True, nogil=True)
def momentum_ignition_nb(ev, start, cfg, st, out):
    sc = st.sc
    n_act = st.af.shape[0]
    for i in range(start, ev.ts.size):
        if out.n[0] + n_act > out.info.shape[0]:
            return i, OUT_FULL
        if _full(st.parts):
            return i, GROW
        kind = ev.kind[i]
        before = sc[MS_REF]
        r = _ref(sc, MS_HAS, MS_REF, kind, ev.price[i], ev.mid[i])
        now = ev.ts[i]
        if kind == TRADE:
            pid, d, q = ev.pid[i], ev.side[i], ev.size[i]
            cum = MS_CUM + _si(d)
            sc[cum] += q
            if pid >= 0:
                ps = _get(st.parts, pid)
                p = st.parts.vals
                if p[ps, M_DIR] == d and now - p[ps, M_LAST] <= cfg[MI_GAP]:
                    p[ps, M_N] += 1.0
                    p[ps, M_VOL] += q
                else:
                    p[ps, M_DIR], p[ps, M_N], p[ps, M_VOL] = d, 1.0, q
                    p[ps, M_TS], p[ps, M_PX] = now, before if before > 0 else r
                    p[ps, M_CUM0] = sc[cum] - q
                p[ps, M_LAST] = now
                n = int(p[ps, M_N])
                if n <= RING:
                    p[ps, M_RING + n - 1] = ev.eid[i]
                share = p[ps, M_VOL] / (sc[cum] - p[ps, M_CUM0])
                if n >= cfg[MI_NMIN] and d * (r - p[ps, M_PX]) / p[ps, M_PX] * 1e4 >= cfg[MI_MOVE] \
                        and share >= cfg[MI_SHARE]:
                    _mi_burst(st, ps, pid, r, share)
            if sc[MS_NACT] > 0:
                if pid >= 0:
                    _mi_unwind(cfg, st, pid, d, q, now, ev.eid[i])
                if ev.cpid[i] >= 0:
                    _mi_unwind(cfg, st, ev.cpid[i], -d, q, now, ev.eid[i])
        if sc[MS_NACT] == 0:
            continue
        for a in range(n_act):
            if st.af[a, A_USED] == 0:
                continue
            if now - st.ai[a, AI_END] > cfg[MI_WIN]:
                _mi_free(st, a)
                continue
            d = st.af[a, A_DIR]
            if d * (r - st.af[a, A_PEAK]) > 0:
                st.af[a, A_PEAK] = r
            move = d * (st.af[a, A_PEAK] - st.af[a, A_PX])
            retrace = max(st.af[a, A_RET], d * (st.af[a, A_PEAK] - r) / move)
            st.af[a, A_RET] = retrace
            unwind = st.af[a, A_UNW] / st.af[a, A_VOL]
            if retrace < cfg[MI_RET] or unwind < cfg[MI_UNW]:
                continue
            move_bps = move / st.af[a, A_PX] * 1e4
            lv = _level(cfg, move_bps / cfg[MI_MOVE] * (cfg[C_AGGR] if unwind >= 1.0 else 1.0))
            pid = st.ai[a, AI_PID]
            ps = _find(st.parts, pid)
            p = st.parts.vals
            if _cool_ok(cfg, p[ps, M_ALERT_TS], p[ps, M_ALERT_LV], now, lv):
                p[ps, M_ALERT_TS] = now
                p[ps, M_ALERT_LV] = lv
                rr = _emit(out, MOMENTUM_IGNITION, lv, now, st.ai[a, AI_TS], now, ev.eid[i])
                _add_part(out, rr, pid)
                for k in range(min(int(st.af[a, A_N]), RING)):
                    _add_ev(out, rr, st.ae[a, k])
                for k in range(st.ai[a, AI_NUNW]):
                    _add_ev(out, rr, st.ae[a, RING + k])
                m = out.measures
                m[rr, 0], m[rr, 1], m[rr, 2], m[rr, 3] = st.af[a, A_N], move_bps, retrace, unwind
                m[rr, 4], m[rr, 5], m[rr, 6] = st.af[a, A_VOL], st.ai[a, AI_END] - st.ai[a, AI_TS], d
                m[rr, 7] = st.af[a, A_SHARE]
            _mi_free(st, a)
    return ev.ts.size, DONE
