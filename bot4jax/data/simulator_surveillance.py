"""Surveillance mode of the simulator: an order-book event stream from many participants around a moving
mid, with manipulation episodes planted at known times, and the ground truth.

`simulate_surveillance(duration_s, seed, episodes) -> SurveillanceSim`; everything is drawn from one
`numpy.random.Generator` tree seeded by `seed` (schedule, mid path, background flow, plants on
independent child streams), so the same arguments give identical events.

Background (legitimate) flow, with the defaults of SurveillanceSimParams
    mid         log m on a 100 ms grid: a random walk with daily_vol, plus the drifts of news, meta
                orders and the ramping / momentum-ignition plants; quotes one tick apart around it,
                bid = floor(m / tick) ticks; every event carries the quoted mid
    participants  ids 0..n_participants-1: market makers, meta-order traders, everyone else; the others'
                activity follows a Zipf law (a few very active, many occasional)
    resting orders  Poisson adds (add_rate / s), 70 % from market makers; side ±1; a geometric number
                of ticks behind the touch; lognormal sizes on the lot grid; a lognormal lifetime, then
                a cancel; some are modified once; a few non-maker block orders 10-40x the size, long-lived
    requotes    each market maker now and then posts a two-sided ladder (3 levels a side) that it
                cancels after a lognormal lifetime
    trades      Poisson market orders (trade_rate / s) by the Zipf population, each filling a resting
                order of a market maker (70 %) or another participant, posted at the touch shortly before
                (lognormal age); a larger maker order has its rest cancelled later
    news        a few bursts an hour: the mid moves 15-40 bps in 5-15 s, trade intensity x4 with the
                aggressors leaning 75 % one way, spread over the whole population (legit: no one actor)
    meta orders a few an hour: one meta-order trader buys or sells 20-40 times over 1-3 minutes
                with a small permanent impact (3-8 bps)

Planted episodes (participants from PLANT_ID upward; one slot each after a warm-up, spaced by gap_ms;
an episode's ground truth spans every event of its participants)
    spoofing          5-8 orders 15-40x the typical size, 2-6 ticks behind the touch on one side, each
                      cancelled unfilled after 0.3-1.5 s, over 20-40 s; 2-4 aggressive trades on the other side
    layering          2-3 times: 4-6 orders of 1-3x the size on consecutive levels of one side within
                      2 s, an aggressive trade on the other side, then all cancelled within 0.7 s
    wash_trading      4-8 rounds of identical-size trades going round a self-trade (1 account), a pair
                      or a triangle, each leg a resting order hit by the next account 50-500 ms later
    ramping           50-80 aggressive trades of 8-20x the size in one direction over 40-80 s, with
                      increasing frequency, while the mid is pushed 60-120 bps, accelerating
    quote_stuffing    300-1000 add/cancel pairs a second for 1-4 s, away from the touch, no trades
    momentum_ignition 6-10 aggressive trades of 3-8x the size within 2-5 s push the mid 15-30 bps;
                      others follow briefly; then the mid reverts 80-120 % over 10-30 s while the
                      igniter sells (or buys) back 80-120 % of the burst, half aggressively, half passively
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from bot4jax.errors import ConfigError
from bot4jax.surveillance.events import ADD, CANCEL, MODIFY, TRADE, Events, validate_events

EPISODE_KINDS = ("spoofing", "layering", "wash_trading", "ramping", "quote_stuffing", "momentum_ignition")
PLANT_ID = 1_000_000
DAY_MS = 86_400_000


@dataclass(frozen=True)
class SurveillanceSimParams:
    """Knobs of the background flow and of the schedule (rates per second, times in ms)."""

    start_ms: int = 1_704_067_200_000
    price0: float = 100.0
    tick: float = 0.01
    lot: float = 0.001
    daily_vol: float = 0.03
    step_ms: int = 100
    n_participants: int = 300
    n_market_makers: int = 10
    n_meta_traders: int = 3
    zipf: float = 1.0
    add_rate: float = 30.0
    trade_rate: float = 4.0
    mm_share: float = 0.7
    size_median: float = 1.0
    size_sigma: float = 0.7
    lifetime_median_ms: float = 3_000.0
    lifetime_sigma: float = 1.3
    distance_p: float = 0.35
    modify_prob: float = 0.08
    block_prob: float = 0.004
    block_lifetime_median_ms: float = 30_000.0
    requote_rate: float = 0.1
    ladder_levels: int = 3
    maker_age_median_ms: float = 1_000.0
    news_per_hour: float = 2.0
    news_trade_mult: float = 4.0
    meta_per_hour: float = 4.0
    warmup_ms: int = 300_000
    gap_ms: int = 60_000

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not (isinstance(v, (int, float)) and math.isfinite(v)):
                raise ConfigError(f"surveillance simulator parameter {f.name} must be a finite number, got {v!r}")
        positive = ("price0", "tick", "lot", "daily_vol", "step_ms", "n_participants", "add_rate", "trade_rate",
                    "size_median", "lifetime_median_ms", "block_lifetime_median_ms", "maker_age_median_ms",
                    "ladder_levels", "news_trade_mult")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"surveillance simulator parameter {name} must be > 0, got {getattr(self, name)!r}")
        for name in ("mm_share", "modify_prob", "block_prob", "distance_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"surveillance simulator parameter {name} must be in [0, 1], "
                                  f"got {getattr(self, name)!r}")
        if not self.n_market_makers + self.n_meta_traders + 20 <= self.n_participants:
            raise ConfigError("surveillance simulator needs n_participants >= n_market_makers + n_meta_traders + 20")
        if self.price0 < 1000 * self.tick:
            raise ConfigError(f"surveillance simulator price0 {self.price0} must be at least 1000 ticks")


@dataclass(frozen=True)
class Episode:
    """A planted manipulation: its kind, [start_ts, end_ts] in ms UTC and who did it."""

    kind: str
    start_ts: int
    end_ts: int
    participants: tuple


@dataclass(frozen=True, eq=False)
class SurveillanceSim:
    events: Events
    episodes: tuple  # of Episode, in time order
    params: SurveillanceSimParams
    seed: int
    duration_ms: int


# ---- the event builder --------------------------------------------------------------------------------

class _Builder:
    """Collects events as column chunks with continuous times (ms from the start), sorted at the end."""

    def __init__(self, p: SurveillanceSimParams, log_mid: np.ndarray):
        self.p = p
        self.log_mid = log_mid
        self.chunks: list[tuple] = []
        self.next_oid = 1

    def bid_ticks(self, t) -> np.ndarray:
        k = np.minimum((np.asarray(t) // self.p.step_ms).astype(np.int64), self.log_mid.size - 1)
        return np.floor(np.exp(self.log_mid[k]) / self.p.tick)

    def size(self, rng, n, mult=1.0) -> np.ndarray:
        p = self.p
        raw = p.size_median * np.exp(p.size_sigma * rng.standard_normal(n)) * mult
        return self.lots(raw)

    def lots(self, x) -> np.ndarray:
        return np.maximum(np.round(np.asarray(x, float) / self.p.lot), 1.0) * self.p.lot

    def emit(self, t, kind, oid, pid, cpid, side, ticks, size):
        n = np.size(t)
        col = [np.broadcast_to(np.asarray(x), (n,)).copy() for x in (t, kind, oid, pid, cpid, side, ticks, size)]
        self.chunks.append(tuple(col))

    def add(self, t, pid, side, ticks, size) -> np.ndarray:
        n = np.size(t)
        oid = np.arange(self.next_oid, self.next_oid + n, dtype=np.int64)
        self.next_oid += n
        self.emit(t, ADD, oid, pid, -1, side, ticks, size)
        return oid

    def market(self, rng, t, taker, side, size, makers) -> None:
        """Market orders at times t, each filling a fresh resting order of the given maker at the touch."""
        t = np.asarray(t, float)
        n = t.size
        if n == 0:
            return
        p = self.p
        side = np.broadcast_to(side, (n,)).astype(np.int64)
        size = np.broadcast_to(size, (n,)).astype(float)
        makers = np.broadcast_to(makers, (n,)).astype(np.int64)
        bid = self.bid_ticks(t)
        ticks = np.where(side > 0, bid + 1, bid)  # a buy lifts the ask, a sell hits the bid
        age = np.minimum(p.maker_age_median_ms * np.exp(rng.standard_normal(n)), 0.5 * t)
        age = np.maximum(age, 0.5)
        bigger = rng.random(n) < 0.4
        osize = np.where(bigger, self.lots(size * (1.2 + 1.8 * rng.random(n))), size)
        oid = self.add(t - age, makers, -side, ticks, osize)
        self.emit(t, TRADE, oid, np.broadcast_to(taker, (n,)), makers, side, ticks, size)
        rest = osize > size
        if rest.any():
            tc = t[rest] + p.lifetime_median_ms * 0.5 * np.exp(rng.standard_normal(rest.sum()))
            self.emit(tc, CANCEL, oid[rest], makers[rest], -1, -side[rest], ticks[rest], osize[rest] - size[rest])

    def finish(self, start_ms: int, end_ms: float) -> Events:
        cols = [np.concatenate([c[k] for c in self.chunks]) for k in range(8)]
        t = cols[0]
        keep = (t >= 0) & (t < end_ms)
        order = np.argsort(t[keep], kind="stable")
        t, kind, oid, pid, cpid, side, ticks, size = (c[keep][order] for c in cols)
        bid = self.bid_ticks(t)
        return Events(ts=start_ms + np.floor(t).astype(np.int64), kind=kind.astype(np.int8), order_id=oid,
                      participant=pid, counterparty=cpid, side=side.astype(np.int8), price=ticks * self.p.tick,
                      size=size, mid=(bid + 0.5) * self.p.tick)


# ---- schedule and mid path ------------------------------------------------------------------------------

class _Roles:
    def __init__(self, p: SurveillanceSimParams):
        self.mm = np.arange(p.n_market_makers)
        self.meta = np.arange(p.n_market_makers, p.n_market_makers + p.n_meta_traders)
        self.others = np.arange(p.n_market_makers + p.n_meta_traders, p.n_participants)
        w = 1.0 / np.arange(1, self.others.size + 1) ** p.zipf
        self.weights = w / w.sum()

    def zipf(self, rng, n) -> np.ndarray:
        return rng.choice(self.others, size=n, p=self.weights)

    def makers(self, rng, n, mm_share, exclude=None) -> np.ndarray:
        out = np.where(rng.random(n) < mm_share, rng.choice(self.mm, n), self.zipf(rng, n))
        if exclude is not None:
            clash = out == exclude
            out[clash] = rng.choice(self.mm, int(clash.sum()))
        return out


def _drift(log_steps: np.ndarray, step_ms: int, t0: float, t1: float, move: float, accelerate=False) -> None:
    """Add a total log move over [t0, t1) to the per-step increments (linear or accelerating)."""
    k0, k1 = int(t0 // step_ms), max(int(t1 // step_ms), int(t0 // step_ms) + 1)
    k1 = min(k1, log_steps.size)
    if k1 <= k0:
        return
    w = np.arange(1, k1 - k0 + 1, dtype=float) if accelerate else np.ones(k1 - k0)
    log_steps[k0:k1] += move * w / w.sum()


# ---- background flow --------------------------------------------------------------------------------

def _background(b: _Builder, rng, roles: _Roles, end_ms: float, news: list, metas: list) -> None:
    p = b.p
    # resting orders that are cancelled
    n = rng.poisson(p.add_rate * end_ms / 1000.0)
    t = rng.random(n) * end_ms
    is_mm = rng.random(n) < p.mm_share
    pid = np.where(is_mm, rng.choice(roles.mm, n), roles.zipf(rng, n))
    side = rng.choice(np.array([-1, 1]), n)
    dist = rng.geometric(p.distance_p, n) - 1
    bid = b.bid_ticks(t)
    ticks = np.where(side > 0, bid - dist, bid + 1 + dist)
    size = b.size(rng, n)
    life = p.lifetime_median_ms * np.exp(p.lifetime_sigma * rng.standard_normal(n))
    block = ~is_mm & (rng.random(n) < p.block_prob)
    size[block] = b.lots(size[block] * rng.uniform(10, 40, block.sum()))
    life[block] = p.block_lifetime_median_ms * np.exp(rng.standard_normal(block.sum()))
    oid = b.add(t, pid, side, ticks, size)
    mod = rng.random(n) < p.modify_prob
    new_size = b.lots(size * rng.uniform(0.5, 1.5, n))
    b.emit(t[mod] + life[mod] * rng.uniform(0.2, 0.8, mod.sum()), MODIFY, oid[mod], pid[mod], -1, side[mod],
           ticks[mod], new_size[mod])
    b.emit(t + life, CANCEL, oid, pid, -1, side, ticks, np.where(mod, new_size, size))

    # market-maker ladders
    for mm in roles.mm:
        k = rng.poisson(p.requote_rate * end_ms / 1000.0)
        for t0 in rng.random(k) * end_ms:
            levels = int(p.ladder_levels)
            tt = t0 + rng.random(2 * levels) * 30.0
            sd = np.repeat(np.array([1, -1]), levels)
            lv = np.tile(np.arange(levels), 2)
            bb = b.bid_ticks(t0)
            tk = np.where(sd > 0, bb - lv, bb + 1 + lv)
            sz = b.size(rng, 2 * levels)
            o = b.add(tt, mm, sd, tk, sz)
            b.emit(tt + 0.7 * p.lifetime_median_ms * np.exp(rng.standard_normal(2 * levels)), CANCEL, o, mm, -1, sd,
                   tk, sz)

    # market orders: Poisson by thinning, faster and leaning one way during news
    mult = p.news_trade_mult
    m = rng.poisson(p.trade_rate * mult * end_ms / 1000.0)
    t = np.sort(rng.random(m) * end_ms)
    in_news = np.zeros(m, bool)
    lean = np.zeros(m)
    for t0, t1, direction in news:
        hit = (t >= t0) & (t < t1)
        in_news |= hit
        lean[hit] = direction
    keep = in_news | (rng.random(m) < 1.0 / mult)
    t, lean = t[keep], lean[keep]
    side = np.where(rng.random(t.size) < 0.5 + 0.25 * lean, 1, -1)
    taker = roles.zipf(rng, t.size)
    b.market(rng, t, taker, side, b.size(rng, t.size), roles.makers(rng, t.size, p.mm_share, exclude=taker))

    # meta orders of the meta traders
    for t0, t1, trader, direction in metas:
        k = int(rng.integers(20, 41))
        tt = np.sort(rng.uniform(t0, t1, k))
        b.market(rng, tt, trader, direction, b.size(rng, k, 1.5), roles.makers(rng, k, p.mm_share))


# ---- planted episodes ---------------------------------------------------------------------------------

def _plant_spoofing(b, rng, roles, t0, pid):
    p = b.p
    dur = rng.uniform(20_000, 40_000)
    n = int(rng.integers(5, 9))
    t = t0 + np.linspace(0, dur - 2_000, n) + rng.uniform(0, 500, n)  # >= 2.5 s apart: one live at a time
    side = int(rng.choice([-1, 1]))
    bid = b.bid_ticks(t)
    dist = rng.integers(2, 7, n)
    ticks = np.where(side > 0, bid - dist, bid + 1 + dist)
    size = b.lots(p.size_median * rng.uniform(15, 40, n))
    oid = b.add(t, pid, side, ticks, size)
    tc = t + rng.uniform(300, 1_500, n)
    b.emit(tc, CANCEL, oid, pid, -1, side, ticks, size)
    k = int(rng.integers(2, 5))
    tt = np.sort(rng.uniform(t[0], tc[-1], k))
    b.market(rng, tt, pid, -side, b.size(rng, k), roles.makers(rng, k, p.mm_share))
    return (pid,)


def _plant_layering(b, rng, roles, t0, pid):
    p = b.p
    side = int(rng.choice([-1, 1]))
    reps = int(rng.integers(2, 4))
    t_trade = t0 + 2_000
    for _ in range(reps):
        k = int(rng.integers(4, 7))
        ta = t_trade - np.sort(rng.uniform(200, 2_000, k))[::-1]
        bid = b.bid_ticks(ta)
        lv = np.arange(1, k + 1)
        ticks = np.where(side > 0, bid - lv, bid + 1 + lv)
        size = b.lots(p.size_median * rng.uniform(1, 3, k))
        oid = b.add(ta, pid, side, ticks, size)
        q = b.lots(p.size_median * rng.uniform(1, 2))
        b.market(rng, [t_trade], pid, -side, q, roles.makers(rng, 1, p.mm_share))
        tc = t_trade + rng.uniform(100, 700, k)
        b.emit(tc, CANCEL, oid, pid, -1, side, ticks, size)
        t_trade += rng.uniform(10_000, 15_000)
    return (pid,)


def _plant_wash(b, rng, roles, t0, pids, variant):
    p = b.p
    accounts = {"self": pids[:1], "pair": pids[:2], "triangle": pids[:3]}[variant]
    q = float(b.lots(p.size_median * rng.uniform(2, 10)))
    rounds = int(rng.integers(4, 9))
    t = t0
    for _ in range(rounds):
        for j, seller in enumerate(accounts):
            buyer = accounts[(j + 1) % len(accounts)]
            bid = b.bid_ticks(t)
            oid = b.add([t], buyer, 1, bid, q)  # the buyer rests a bid, the seller hits it
            th = t + rng.uniform(50, 500)
            b.emit(th, TRADE, oid, seller, buyer, -1, b.bid_ticks(t), q)
            t = th + rng.uniform(200, 2_000)
        t += rng.uniform(1_000, 5_000)
    return tuple(int(a) for a in accounts)


def _plan_ramping(rng, t0, log_steps, step_ms):
    dur = rng.uniform(40_000, 80_000)
    side = int(rng.choice([-1, 1]))
    _drift(log_steps, step_ms, t0, t0 + dur, side * rng.uniform(60, 120) * 1e-4, accelerate=True)
    return dict(t0=t0, dur=dur, side=side, n=int(rng.integers(50, 81)), mult=rng.uniform(8, 20))


def _plant_ramping(b, rng, roles, pid, plan):
    t = plan["t0"] + plan["dur"] * np.sqrt(np.sort(rng.random(plan["n"])))  # density rising linearly
    n = t.size
    b.market(rng, t, pid, plan["side"], b.size(rng, n, plan["mult"]), roles.makers(rng, n, b.p.mm_share))
    return (pid,)


def _plant_stuffing(b, rng, roles, t0, pid):
    p = b.p
    dur = rng.uniform(1_000, 4_000)
    n = int(rng.uniform(300, 1_000) * dur / 1_000)
    t = t0 + np.sort(rng.random(n)) * dur
    side = rng.choice(np.array([-1, 1]), n)
    bid = b.bid_ticks(t)
    dist = rng.integers(5, 21, n)
    ticks = np.where(side > 0, bid - dist, bid + 1 + dist)
    size = np.full(n, b.lots(p.size_median))
    oid = b.add(t, pid, side, ticks, size)
    tc = t + rng.uniform(1, 20, n)
    b.emit(tc, CANCEL, oid, pid, -1, side, ticks, size)
    return (pid,)


def _plan_ignition(rng, t0, log_steps, step_ms):
    side = int(rng.choice([-1, 1]))
    burst, follow, rev = rng.uniform(2_000, 5_000), rng.uniform(3_000, 8_000), rng.uniform(10_000, 30_000)
    move = rng.uniform(15, 30) * 1e-4
    extra = move * rng.uniform(0.1, 0.3)
    _drift(log_steps, step_ms, t0, t0 + burst, side * move)
    _drift(log_steps, step_ms, t0 + burst, t0 + burst + follow, side * extra)
    _drift(log_steps, step_ms, t0 + burst + follow, t0 + burst + follow + rev,
           -side * (move + extra) * rng.uniform(0.8, 1.2))
    return dict(t0=t0, side=side, burst=burst, follow=follow, rev=rev)


def _plant_ignition(b, rng, roles, pid, plan):
    p = b.p
    t0, side, burst, follow, rev = (plan[k] for k in ("t0", "side", "burst", "follow", "rev"))
    n = int(rng.integers(6, 11))
    tb = t0 + np.linspace(0, burst, n) + rng.uniform(0, 100, n)
    sizes = b.size(rng, n, rng.uniform(3, 8))
    b.market(rng, tb, pid, side, sizes, roles.makers(rng, n, p.mm_share))
    # others follow for a few seconds
    k = int(rng.integers(4, 9))
    tf = np.sort(rng.uniform(t0 + burst, t0 + burst + follow, k))
    takers = roles.zipf(rng, k)
    b.market(rng, tf, takers, side, b.size(rng, k), roles.makers(rng, k, p.mm_share, exclude=takers))
    # the reversal, while the igniter unwinds, half aggressively, half into bids / offers it rests
    t_peak = t0 + burst + follow
    m = int(rng.integers(6, 13))
    parts = b.lots(sizes.sum() * rng.uniform(0.8, 1.2) * rng.dirichlet(np.ones(m)))
    tu = np.sort(rng.uniform(t_peak - 0.5 * follow, t_peak + 0.8 * rev, m))
    aggressive = rng.random(m) < 0.5
    b.market(rng, tu[aggressive], pid, -side, parts[aggressive], roles.makers(rng, int(aggressive.sum()), p.mm_share))
    passive = ~aggressive
    if passive.any():
        b.market(rng, tu[passive], roles.zipf(rng, int(passive.sum())), side, parts[passive], pid)
    return (pid,)


_LENGTH_MS = {"spoofing": 45_000, "layering": 50_000, "wash_trading": 70_000, "ramping": 90_000,
              "quote_stuffing": 5_000, "momentum_ignition": 45_000}


def simulate_surveillance(duration_s: float = 1_800.0, seed: int = 0, episodes=EPISODE_KINDS,
                          params: SurveillanceSimParams | None = None, wash_variants=("self", "pair", "triangle"),
                          **overrides) -> SurveillanceSim:
    """Background flow for `duration_s` seconds with the given episodes planted in order (a kind may
    repeat; empty: a clean stream). Episodes start after params.warmup_ms, one slot each, at least
    params.gap_ms apart; a duration too short for them raises ConfigError. Wash episodes cycle through
    `wash_variants`. Returns the validated events and the ground truth (`Episode`s in time order)."""
    base = params or SurveillanceSimParams()
    known = {f.name for f in dataclasses.fields(SurveillanceSimParams)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"unknown surveillance simulator parameter(s) {unknown}; known: {sorted(known)}")
    p = dataclasses.replace(base, **overrides) if overrides else base
    episodes = tuple(episodes)
    bad = [k for k in episodes if k not in EPISODE_KINDS]
    if bad:
        raise ConfigError(f"unknown episode kind(s) {bad}; choose from {list(EPISODE_KINDS)}")
    if not duration_s > 0:
        raise ConfigError(f"simulate_surveillance needs duration_s > 0, got {duration_s!r}")
    end_ms = float(duration_s) * 1000.0
    need = p.warmup_ms + sum(_LENGTH_MS[k] + p.gap_ms for k in episodes)
    if need > end_ms:
        raise ConfigError(f"{len(episodes)} episodes need at least {need / 1000:.0f} s after the "
                          f"{p.warmup_ms / 1000:.0f} s warm-up; got duration_s={duration_s}")
    rng_sched, rng_bg, rng_plant, rng_walk = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
    roles = _Roles(p)

    # schedule: plant slots, news, meta orders
    slack = (end_ms - need) / max(len(episodes), 1)
    starts, t = [], float(p.warmup_ms)
    for k in episodes:
        s = t + rng_sched.uniform(0, slack)
        starts.append(s)
        t = s + _LENGTH_MS[k] + p.gap_ms
    hours = end_ms / 3_600_000
    news = []
    for t0 in np.sort(rng_sched.random(rng_sched.poisson(p.news_per_hour * hours)) * end_ms):
        news.append((t0, t0 + rng_sched.uniform(5_000, 15_000), float(rng_sched.choice([-1, 1]))))
    metas = []
    for t0 in np.sort(rng_sched.random(rng_sched.poisson(p.meta_per_hour * hours)) * end_ms):
        metas.append((t0, t0 + rng_sched.uniform(60_000, 180_000), int(rng_sched.choice(roles.meta)),
                      int(rng_sched.choice([-1, 1]))))

    # the mid: a random walk plus the drifts of news, meta orders and plants
    n_steps = int(math.ceil(end_ms / p.step_ms)) + 1
    sigma_step = p.daily_vol * math.sqrt(p.step_ms / DAY_MS)
    log_steps = sigma_step * rng_walk.standard_normal(n_steps)
    for t0, t1, direction in news:
        _drift(log_steps, p.step_ms, t0, t1, direction * rng_walk.uniform(15, 40) * 1e-4)
    for t0, t1, _, direction in metas:
        _drift(log_steps, p.step_ms, t0, t1, direction * rng_walk.uniform(3, 8) * 1e-4)
    # plants that move the mid draw their drift first: every price is read from the finished path
    plans = {j: (_plan_ramping if k == "ramping" else _plan_ignition)(rng_plant, s, log_steps, p.step_ms)
             for j, (k, s) in enumerate(zip(episodes, starts)) if k in ("ramping", "momentum_ignition")}
    b = _Builder(p, math.log(p.price0) + np.cumsum(log_steps))

    _background(b, rng_bg, roles, end_ms, news, metas)
    truth = []
    wash_i = 0
    for j, (k, s) in enumerate(zip(episodes, starts)):
        pid = PLANT_ID + 10 * j
        if k == "wash_trading":
            variant = wash_variants[wash_i % len(wash_variants)]
            wash_i += 1
            who = _plant_wash(b, rng_plant, roles, s, (pid, pid + 1, pid + 2), variant)
        elif k == "ramping":
            who = _plant_ramping(b, rng_plant, roles, pid, plans[j])
        elif k == "momentum_ignition":
            who = _plant_ignition(b, rng_plant, roles, pid, plans[j])
        else:
            fn = {"spoofing": _plant_spoofing, "layering": _plant_layering, "quote_stuffing": _plant_stuffing}[k]
            who = fn(b, rng_plant, roles, s, pid)
        truth.append((k, who))
    events = b.finish(p.start_ms, end_ms)
    validate_events(events, f"simulate_surveillance(seed={seed})")
    episodes_out = []
    for k, who in truth:  # an episode spans every event of its (planted, unique) participants
        mine = np.isin(events.participant, who) | np.isin(events.counterparty, who)
        episodes_out.append(Episode(k, int(events.ts[mine].min()), int(events.ts[mine].max()), who))
    return SurveillanceSim(events=events, episodes=tuple(episodes_out), params=p, seed=seed,
                           duration_ms=int(end_ms))

