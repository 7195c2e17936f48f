"""Plain-Python references of the six surveillance kernels (bot4jax.kernels.surveillance_nb).

Each follows the rules written in the kernel module's docstring with dicts, deques and lists instead
of hash tables and rings, one event at a time. `run_reference(name, events, config)` returns alerts
as plain dicts: detector, level, ts, start_ts, end_ts, participants, event_ids, measures (a list in
the order of alerts.MEASURES), trigger_id.

Evidence order (shared with the kernels): spoofing: per counted cancel, newest first, its add id then
its cancel id; layering: the arming trade, then (add, cancel) per counted cancel in cancel order (the
first 15); wash trading: the cycles of the key, newest first, each its path edges then the closing
trade; ramping: the participant's (market-wide: every) window trades, newest first; quote stuffing:
the last 32 messages, newest first; momentum ignition: the first 16 burst trades, then the first 16
unwinding trades. At most 32 ids, 8 participants (deduplicated, in that order).
"""
from __future__ import annotations

import math
from collections import deque

from bot4jax.surveillance.config import SurveillanceConfig

ADD, CANCEL, MODIFY, TRADE = 0, 1, 2, 3
NEVER = -1e18
MAX_EVIDENCE, MAX_PARTS, RING, CYCLES_KEPT, LAYER_PAIRS = 32, 8, 16, 64, 15
DETECTOR_INDEX = {"spoofing": 0, "layering": 1, "wash_trading": 2, "ramping": 3, "quote_stuffing": 4,
                  "momentum_ignition": 5}


def _alpha(halflife):
    return 1.0 - 2.0 ** (-1.0 / halflife)


class _Common:
    def __init__(self, name, c: SurveillanceConfig):
        self.name, self.c = name, c
        self.alerts = []
        self.has_mid, self.r = False, 0.0

    def ref(self, kind, price, mid):
        if math.isfinite(mid):
            self.has_mid, self.r = True, mid
        elif kind == TRADE and not self.has_mid:
            self.r = price
        return self.r

    def level(self, score):
        lv = 0
        for k, t in enumerate(self.c.level_scores):
            if score >= t:
                lv = k + 1
        return lv

    def cool_ok(self, last_ts, last_lv, now, lv):
        return lv > 0 and (now - last_ts > self.c.cooldown_ms or lv > last_lv)

    def emit(self, lv, ts, start, end, trigger, participants, events, measures):
        parts = []
        for p in participants:
            if p not in parts and len(parts) < MAX_PARTS:
                parts.append(int(p))
        self.alerts.append(dict(detector=self.name, level=lv, ts=int(ts), start_ts=int(start), end_ts=int(end),
                                participants=tuple(parts), event_ids=tuple(int(e) for e in events[:MAX_EVIDENCE]),
                                measures=[float(m) for m in measures], trigger_id=int(trigger)))


def _rows(ev):
    cols = [ev.ts.tolist(), ev.kind.tolist(), ev.order_id.tolist(), ev.participant.tolist(),
            ev.counterparty.tolist(), ev.side.tolist(), ev.price.tolist(), ev.size.tolist(), ev.mid.tolist(),
            ev.id.tolist()]
    return zip(*cols)


# ---- spoofing ---------------------------------------------------------------------------------------

def spoofing(ev, c):
    x = _Common("spoofing", c)
    a = _alpha(c.spoof_size_halflife)
    mu, nadd = 0.0, 0
    orders, parts = {}, {}

    def part(pid):
        if pid not in parts:
            parts[pid] = dict(ring=deque(maxlen=RING), trade={1: NEVER, -1: NEVER}, alert_ts=NEVER, alert_lv=0)
        return parts[pid]

    for ts, kind, oid, pid, cpid, side, price, size, mid, eid in _rows(ev):
        r = x.ref(kind, price, mid)
        if kind == ADD:
            mult = size / math.exp(mu) if nadd >= c.spoof_warmup_adds else 0.0
            nadd += 1
            mu += max(a, 1.0 / nadd) * (math.log(size) - mu)
            if oid < 0 or pid < 0:
                continue
            dist = abs(price - r) / r * 1e4 if r > 0 else math.nan
            orders[oid] = dict(pid=pid, side=side, size=size, filled=0.0, ts=ts, dist=dist, mult=mult, eid=eid)
        elif kind in (CANCEL, MODIFY):
            if oid < 0 or oid not in orders:
                continue
            o = orders[oid]
            if kind == MODIFY and size > 0:
                o["size"] = size + o["filled"]
                o["mult"] = size / math.exp(mu) if nadd >= c.spoof_warmup_adds else 0.0
                o["dist"] = abs(price - r) / r * 1e4 if r > 0 else math.nan
                continue
            del orders[oid]
            life = ts - o["ts"]
            like = (o["mult"] >= c.spoof_size_mult and c.spoof_min_distance_bps <= o["dist"] <= c.spoof_max_distance_bps
                    and life <= c.spoof_max_lifetime_ms and o["filled"] <= c.spoof_max_fill_ratio * o["size"])
            if not like:
                continue
            p = part(o["pid"])
            p["ring"].append(dict(ts=ts, side=o["side"], add=o["eid"], cancel=eid, size=o["size"], life=life,
                                  dist=o["dist"], mult=o["mult"], add_ts=o["ts"]))
            hits = [e for e in reversed(p["ring"]) if e["side"] == o["side"] and e["ts"] >= ts - c.spoof_window_ms]
            n = len(hits)
            vol = life_s = dist_s = mult_s = 0.0
            start = ts
            for e in hits:
                vol += e["size"]
                life_s += e["life"]
                dist_s += e["dist"]
                mult_s += e["mult"]
                start = min(start, e["add_ts"])
            if n < c.spoof_min_orders:
                continue
            traded = p["trade"][-o["side"]] >= start
            lv = x.level(n / c.spoof_min_orders * (c.aggravation if traded else 1.0))
            if not x.cool_ok(p["alert_ts"], p["alert_lv"], ts, lv):
                continue
            p["alert_ts"], p["alert_lv"] = ts, lv
            evidence = [k for e in hits for k in (e["add"], e["cancel"])]
            x.emit(lv, ts, start, ts, eid, [o["pid"]], evidence,
                   [n, vol, mult_s / n, life_s / n, dist_s / n, 1.0 if traded else 0.0, o["side"]])
        else:
            if oid >= 0 and oid in orders:
                o = orders[oid]
                o["filled"] += size
                if o["filled"] >= o["size"]:
                    del orders[oid]
            if pid >= 0:
                part(pid)["trade"][side] = ts
            if cpid >= 0:
                part(cpid)["trade"][-side] = ts
    return x.alerts


# ---- layering ---------------------------------------------------------------------------------------

def layering(ev, c):
    x = _Common("layering", c)
    orders, parts = {}, {}

    def part(pid):
        if pid not in parts:
            blk = lambda: dict(armed=False, ts=0.0, eid=0, cnt=0.0, vol=0.0, opp=0.0, n=0, nvol=0.0, first=0.0,
                               delay=0.0, pairs=[])  # noqa: E731
            parts[pid] = dict(cnt={1: 0.0, -1: 0.0}, vol={1: 0.0, -1: 0.0}, blk={1: blk(), -1: blk()},
                              alert_ts=NEVER, alert_lv=0)
        return parts[pid]

    def live(p, side, dc, dv):
        p["cnt"][side] += dc
        p["vol"][side] += dv
        if p["cnt"][side] <= 0:
            p["cnt"][side], p["vol"][side] = 0.0, 0.0

    def arm(who, trade_side, now, eid):
        p = part(who)
        s = -trade_side
        b = p["blk"][s]
        if b["armed"] and now - b["ts"] <= c.layer_cancel_window_ms:
            return
        cnt, vol, opp = p["cnt"][s], p["vol"][s], p["vol"][trade_side]
        if cnt >= c.layer_min_orders and vol > 0 and vol >= c.layer_imbalance * opp:
            b.update(armed=True, ts=now, eid=eid, cnt=cnt, vol=vol, opp=opp, n=0, nvol=0.0, first=now, delay=0.0,
                     pairs=[])
        else:
            b["armed"] = False

    for ts, kind, oid, pid, cpid, side, price, size, mid, eid in _rows(ev):
        if kind == ADD:
            if oid < 0 or pid < 0:
                continue
            if oid in orders:
                old = orders.pop(oid)
                live(parts[old["pid"]], old["side"], -1.0, -old["rem"])
            orders[oid] = dict(pid=pid, side=side, rem=size, ts=ts, eid=eid)
            live(part(pid), side, 1.0, size)
        elif kind in (CANCEL, MODIFY):
            if oid < 0 or oid not in orders:
                continue
            o = orders[oid]
            p = parts[o["pid"]]
            if kind == MODIFY and size > 0:
                live(p, o["side"], 0.0, size - o["rem"])
                o["rem"] = size
                continue
            del orders[oid]
            live(p, o["side"], -1.0, -o["rem"])
            b = p["blk"][o["side"]]
            t_tr = b["ts"]
            if not (b["armed"] and ts - t_tr <= c.layer_cancel_window_ms and o["ts"] <= t_tr
                    and t_tr - o["ts"] <= c.layer_stack_window_ms):
                continue
            if b["n"] < LAYER_PAIRS:
                b["pairs"].append((o["eid"], eid))
            b["n"] += 1
            b["nvol"] += o["rem"]
            b["first"] = min(b["first"], o["ts"])
            b["delay"] = max(b["delay"], ts - t_tr)
            n = b["n"]
            if n < c.layer_min_orders or n < c.layer_min_cancel_share * b["cnt"]:
                continue
            lv = x.level(n / c.layer_min_orders)
            if not x.cool_ok(p["alert_ts"], p["alert_lv"], ts, lv):
                continue
            p["alert_ts"], p["alert_lv"] = ts, lv
            evidence = [b["eid"]] + [k for pair in b["pairs"] for k in pair]
            x.emit(lv, ts, b["first"], ts, eid, [o["pid"]], evidence,
                   [n, b["cnt"], b["vol"], b["vol"] / (b["vol"] + b["opp"]), b["nvol"], b["delay"],
                    1.0 if o["side"] > 0 else -1.0])
        else:
            if oid >= 0 and oid in orders:
                o = orders[oid]
                p = parts[o["pid"]]
                fill = min(size, o["rem"])
                o["rem"] -= fill
                if o["rem"] <= 0.0:
                    live(p, o["side"], -1.0, -fill)
                    del orders[oid]
                else:
                    live(p, o["side"], 0.0, -fill)
            if pid >= 0:
                arm(pid, side, ts, eid)
            if cpid >= 0:
                arm(cpid, -side, ts, eid)
    return x.alerts


# ---- wash trading -------------------------------------------------------------------------------------

_M64 = (1 << 64) - 1


def cycle_key(nodes) -> int:
    h = 14695981039346656037
    for n in sorted(nodes):
        h = ((h ^ (n & _M64)) * 1099511628211) & _M64
    h = h - (1 << 64) if h >= 1 << 63 else h
    return 0 if h == -(1 << 63) else h


def _shortest_path(cand, u, v, maxc):
    """The first (lexicographic by position) time-ordered path v -> ... -> u of the fewest edges."""
    for length in range(2, maxc + 1):
        def extend(path, start, node, used):
            if len(path) == length - 1:
                return path if node == u else None
            for k in range(start, len(cand)):
                e = cand[k]
                if e["sn"] != node:
                    continue
                nxt = e["bn"]
                last = len(path) == length - 2
                if (last and nxt != u) or (not last and nxt in used):
                    continue
                found = extend(path + [e], k + 1, nxt, used | {nxt})
                if found is not None:
                    return found
            return None
        found = extend([], 0, v, {u, v})
        if found is not None:
            return found
    return None


def wash_trading(ev, c):
    x = _Common("wash_trading", c)
    rep = {p: min(g) for g in c.linked_groups for p in g}
    edges = deque(maxlen=int(c.wash_max_edges))
    cycles = deque(maxlen=CYCLES_KEPT)
    cool = {}
    for ts, kind, oid, pid, cpid, side, price, q, mid, eid in _rows(ev):
        if kind != TRADE or pid < 0 or cpid < 0:
            continue
        seller, buyer = (cpid, pid) if side > 0 else (pid, cpid)
        u, v = rep.get(seller, seller), rep.get(buyer, buyer)
        path = None
        if u == v:
            path = []
        elif c.wash_max_cycle >= 2:
            cand = [e for e in edges
                    if e["ts"] >= ts - c.wash_cycle_ms and abs(e["size"] - q) <= c.wash_size_tolerance * q]
            path = _shortest_path(cand, u, v, int(c.wash_max_cycle))
        edges.append(dict(ts=ts, sn=u, bn=v, sp=seller, bp=buyer, eid=eid, size=q))
        if path is None:
            continue
        nodes = [u] if u == v else [u, v] + [e["bn"] for e in path[:-1]]
        parts = []
        for p in [k for e in path for k in (e["sp"], e["bp"])] + [seller, buyer]:
            if p not in parts:
                parts.append(p)
        vol = q
        for e in path:
            vol += e["size"]
        cycles.append(dict(key=cycle_key(nodes), ts=ts, start=min([ts] + [e["ts"] for e in path]),
                           length=len(path) + 1, eids=[e["eid"] for e in path] + [eid], parts=parts[:8], vol=vol))
        key = cycles[-1]["key"]
        mine = [cy for cy in reversed(cycles) if cy["key"] == key and cy["ts"] >= ts - c.wash_window_ms]
        n = len(mine)
        total = 0.0
        earliest = ts
        for cy in mine:
            total += cy["vol"]
            earliest = min(earliest, cy["start"])
        if n < c.wash_min_cycles:
            continue
        lv = x.level(n / c.wash_min_cycles)
        last_ts, last_lv = cool.get(key, (NEVER, 0))
        if not x.cool_ok(last_ts, last_lv, ts, lv):
            continue
        cool[key] = (ts, lv)
        x.emit(lv, ts, earliest, ts, eid, [p for cy in mine for p in cy["parts"]],
               [e for cy in mine for e in cy["eids"]], [n, len(path) + 1, total, ts - earliest, q])
    return x.alerts


# ---- ramping ------------------------------------------------------------------------------------------

def ramping(ev, c):
    x = _Common("ramping", c)
    a = _alpha(c.ramp_halflife_buckets)
    w, bucket = int(c.ramp_window_buckets), int(c.ramp_bucket_ms)
    st = dict(started=False, cur=0, first=0, nu=0.0, var=0.0, n=0, last=0.0)
    buckets = {}  # b -> [close, vol, buy, sell]
    trades = deque()
    parts = {}

    def part(pid):
        if pid not in parts:
            parts[pid] = dict(vol={1: 0.0, -1: 0.0}, n={1: 0.0, -1: 0.0}, alert_ts=NEVER, alert_lv=0)
        return parts[pid]

    def push(vol, g, has_return):
        st["n"] += 1
        st["nu"] += max(a, 1.0 / st["n"]) * (vol - st["nu"])
        if has_return:
            st["var"] += max(a, 1.0 / (st["n"] - 1.0)) * (g * g - st["var"])

    for ts, kind, oid, pid, cpid, side, price, q, mid, eid in _rows(ev):
        r = x.ref(kind, price, mid)
        if kind != TRADE:
            continue
        b = ts // bucket
        if not st["started"]:
            st.update(started=True, cur=b, first=b)
            buckets[b] = [math.nan, 0.0, 0.0, 0.0]
        elif b > st["cur"]:
            vol_c, close_c = buckets[st["cur"]][1], buckets[st["cur"]][0]
            first = st["n"] == 0
            push(vol_c, 0.0 if first else math.log(close_c / st["last"]), not first)
            st["last"] = close_c
            for j in range(st["cur"] + 1, b):
                push(0.0, 0.0, True)
                buckets[j] = [close_c, 0.0, 0.0, 0.0]
            st["cur"] = b
            buckets[b] = [math.nan, 0.0, 0.0, 0.0]
        bk = buckets[b]
        bk[1] += q
        bk[2 if side > 0 else 3] += q
        bk[0] = r
        force = len(trades) >= int(c.ramp_max_trades)
        while trades and (trades[0]["b"] < b - w + 1 or force):
            force = False
            t = trades.popleft()
            if t["pid"] >= 0:
                p = parts[t["pid"]]
                p["vol"][t["side"]] -= t["size"]
                p["n"][t["side"]] -= 1.0
                if p["n"][t["side"]] <= 0:
                    p["n"][t["side"]], p["vol"][t["side"]] = 0.0, 0.0
        trades.append(dict(pid=pid, side=side, eid=eid, b=b, ts=ts, size=q))
        if pid >= 0:
            p = part(pid)
            p["vol"][side] += q
            p["n"][side] += 1.0
        if st["n"] < c.ramp_warmup_buckets or b - w < st["first"] or st["var"] <= 0 or st["nu"] <= 0:
            continue
        ret = math.log(r / buckets[b - w][0])
        if ret == 0 or not math.isfinite(ret):
            continue
        d = 1 if ret > 0 else -1
        if pid >= 0 and side != d:
            continue
        z = abs(ret) / math.sqrt(st["var"] * w)
        if z < c.ramp_min_z:
            continue
        vol = vdir = 0.0
        for j in range(b - w + 1, b + 1):
            vol += buckets[j][1]
            vdir += buckets[j][2] if d > 0 else buckets[j][3]
        vr = vol / (st["nu"] * w)
        direction = vdir / vol
        if vr < c.ramp_min_volume_ratio or direction < c.ramp_min_direction:
            continue
        share = n_p = math.nan
        if pid >= 0:
            share = parts[pid]["vol"][d] / vdir
            n_p = parts[pid]["n"][d]
            if share < c.ramp_min_share or n_p < c.ramp_min_trades:
                continue
        key = part(pid if pid >= 0 else -1)
        lv = x.level(min(z / c.ramp_min_z, vr / c.ramp_min_volume_ratio))
        if not x.cool_ok(key["alert_ts"], key["alert_lv"], ts, lv):
            continue
        key["alert_ts"], key["alert_lv"] = ts, lv
        mine = [t for t in trades if pid < 0 or t["pid"] == pid]
        start = min([ts] + [t["ts"] for t in mine])
        x.emit(lv, ts, start, ts, eid, [pid] if pid >= 0 else [], [t["eid"] for t in reversed(mine)],
               [ret * 1e4, z, vr, direction, share, n_p, vol])
    return x.alerts


# ---- quote stuffing -----------------------------------------------------------------------------------

def quote_stuffing(ev, c):
    x = _Common("quote_stuffing", c)
    parts = {}

    def decayed(pid, now):
        p = parts.setdefault(pid, dict(f=0.0, s=0.0, k=0.0, t=NEVER, b=0.0, ring=deque(maxlen=MAX_EVIDENCE),
                                       alert_ts=NEVER, alert_lv=0))
        dt = now - p["t"]
        p["f"] *= math.exp(-dt / c.qs_fast_ms)
        p["s"] *= math.exp(-dt / c.qs_slow_ms)
        p["k"] *= math.exp(-dt / c.qs_fast_ms)
        p["t"] = now
        return p

    for ts, kind, oid, pid, cpid, side, price, size, mid, eid in _rows(ev):
        if kind == TRADE:
            decayed(pid, ts)["k"] += 1.0
            if cpid >= 0 and cpid != pid:
                decayed(cpid, ts)["k"] += 1.0
            continue
        p = decayed(pid, ts)
        if p["f"] < 0.5:
            p["b"] = ts
        p["f"] += 1.0
        p["s"] += 1.0
        p["ring"].append(eid)
        f = p["f"]
        ratio = (f / c.qs_fast_ms) / (p["s"] / c.qs_slow_ms)
        share = p["k"] / f
        if f < c.qs_min_messages or ratio < c.qs_burst_ratio or share > c.qs_max_trade_ratio:
            continue
        lv = x.level(f / c.qs_min_messages)
        if not x.cool_ok(p["alert_ts"], p["alert_lv"], ts, lv):
            continue
        p["alert_ts"], p["alert_lv"] = ts, lv
        x.emit(lv, ts, p["b"], ts, eid, [pid] if pid >= 0 else [], list(reversed(p["ring"])),
               [f, ratio, share, ts - p["b"], p["s"]])
    return x.alerts


# ---- momentum ignition --------------------------------------------------------------------------------

def momentum_ignition(ev, c):
    x = _Common("momentum_ignition", c)
    cap = int(c.mi_max_active)
    slots = [None] * cap
    cum = {1: 0.0, -1: 0.0}
    state = dict(seq=0, nact=0)
    parts = {}

    def part(pid):
        if pid not in parts:
            parts[pid] = dict(dir=0, n=0, vol=0.0, ts=0, px=0.0, last=NEVER, act=-1, alert_ts=NEVER, alert_lv=0,
                              cum0=0.0, ring=[0] * RING)
        return parts[pid]

    def free(a):
        owner = parts.get(slots[a]["pid"])
        slots[a] = None
        state["nact"] -= 1
        if owner is not None and owner["act"] == a:
            owner["act"] = -1

    def burst(p, pid, r, share):
        a = p["act"]
        s = slots[a] if a >= 0 else None
        if not (s is not None and s["ts"] == p["ts"] and s["dir"] == p["dir"]):
            free_slots = [k for k in range(cap) if slots[k] is None]
            if free_slots:
                a = free_slots[0]
            else:
                a = min(range(cap), key=lambda k: slots[k]["seq"])
                free(a)
            state["nact"] += 1
            state["seq"] += 1
            slots[a] = dict(seq=state["seq"], dir=p["dir"], px=p["px"], peak=r, unw=0.0, ret=0.0, pid=pid, ts=p["ts"],
                            unw_eids=[], share=share)
            p["act"] = a
        s = slots[a]
        if s["dir"] * (r - s["peak"]) > 0:
            s["peak"] = r
        s.update(vol=p["vol"], n=p["n"], share=share, end=p["last"], eids=p["ring"][:min(p["n"], RING)])

    def unwind(who, trade_side, q, now, eid):
        for s in slots:
            if s is None or s["pid"] != who or s["dir"] != -trade_side or now - s["end"] > c.mi_window_ms:
                continue
            s["unw"] += q
            if len(s["unw_eids"]) < RING:
                s["unw_eids"].append(eid)

    for ts, kind, oid, pid, cpid, side, price, q, mid, eid in _rows(ev):
        before = x.r
        r = x.ref(kind, price, mid)
        if kind == TRADE:
            d = side
            cum[d] += q
            if pid >= 0:
                p = part(pid)
                if p["dir"] == d and ts - p["last"] <= c.mi_max_gap_ms:
                    p["n"] += 1
                    p["vol"] += q
                else:
                    p.update(dir=d, n=1, vol=q, ts=ts, px=before if before > 0 else r, cum0=cum[d] - q)
                p["last"] = ts
                if p["n"] <= RING:
                    p["ring"][p["n"] - 1] = eid
                share = p["vol"] / (cum[d] - p["cum0"])
                if p["n"] >= c.mi_min_trades and d * (r - p["px"]) / p["px"] * 1e4 >= c.mi_min_move_bps \
                        and share >= c.mi_min_share:
                    burst(p, pid, r, share)
            if state["nact"] > 0:
                if pid >= 0:
                    unwind(pid, d, q, ts, eid)
                if cpid >= 0:
                    unwind(cpid, -d, q, ts, eid)
        if state["nact"] == 0:
            continue
        for a in range(cap):
            s = slots[a]
            if s is None:
                continue
            if ts - s["end"] > c.mi_window_ms:
                free(a)
                continue
            d = s["dir"]
            if d * (r - s["peak"]) > 0:
                s["peak"] = r
            move = d * (s["peak"] - s["px"])
            retrace = max(s["ret"], d * (s["peak"] - r) / move)
            s["ret"] = retrace
            unwind_ratio = s["unw"] / s["vol"]
            if retrace < c.mi_min_retrace or unwind_ratio < c.mi_min_unwind:
                continue
            move_bps = move / s["px"] * 1e4
            lv = x.level(move_bps / c.mi_min_move_bps * (c.aggravation if unwind_ratio >= 1.0 else 1.0))
            p = parts[s["pid"]]
            if x.cool_ok(p["alert_ts"], p["alert_lv"], ts, lv):
                p["alert_ts"], p["alert_lv"] = ts, lv
                x.emit(lv, ts, s["ts"], ts, eid, [s["pid"]], s["eids"] + s["unw_eids"],
                       [s["n"], move_bps, retrace, unwind_ratio, s["vol"], s["end"] - s["ts"], d, s["share"]])
            free(a)
    return x.alerts


REFERENCES = {"spoofing": spoofing, "layering": layering, "wash_trading": wash_trading, "ramping": ramping,
              "quote_stuffing": quote_stuffing, "momentum_ignition": momentum_ignition}


def run_reference(name, events, config=None):
    return REFERENCES[name](events, config or SurveillanceConfig())
