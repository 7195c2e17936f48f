"""The six detectors as (init, update) pairs around the Numba kernels of `bot4jax.kernels.surveillance_nb`.

    state = detector_init("spoofing", config)
    state, alerts = detector_update(state, events)      # events: Events, in time order, batch by batch

`detector_update` mutates the state's arrays in place and may return a new state (a hash table
that grew): always continue with the returned one. Feeding a stream in batches gives the same alerts
as feeding it at once. `detect(events, config)` runs every detector over a whole stream.
The rules, measures and scores of each detector are in the kernel module's docstring.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from bot4jax.kernels import surveillance_nb as nb
from bot4jax.surveillance.alerts import DETECTORS, MEASURES, Alert, AlertLevel
from bot4jax.surveillance.config import SurveillanceConfig
from bot4jax.surveillance.events import Events

_OUT_CAPACITY = 256


def _alpha(halflife: float) -> float:
    """EWMA weight with the given half-life in updates: 1 - 2^(-1 / halflife)."""
    return 1.0 - 2.0 ** (-1.0 / halflife)


def config_vector(name: str, c: SurveillanceConfig) -> np.ndarray:
    """The kernel's float64 parameter vector: COMMON entries, then the detector's own (surveillance_nb)."""
    common = [*c.level_scores, c.aggravation, c.cooldown_ms]
    own = {
        "spoofing": [c.spoof_size_mult, _alpha(c.spoof_size_halflife), c.spoof_min_distance_bps,
                     c.spoof_max_distance_bps, c.spoof_max_lifetime_ms, c.spoof_max_fill_ratio, c.spoof_window_ms,
                     c.spoof_min_orders, c.spoof_warmup_adds],
        "layering": [c.layer_min_orders, c.layer_min_cancel_share, c.layer_imbalance, c.layer_stack_window_ms,
                     c.layer_cancel_window_ms],
        "wash_trading": [c.wash_window_ms, c.wash_size_tolerance, c.wash_max_cycle, c.wash_min_cycles,
                         c.wash_cycle_ms],
        "ramping": [c.ramp_bucket_ms, c.ramp_window_buckets, _alpha(c.ramp_halflife_buckets), c.ramp_warmup_buckets,
                    c.ramp_min_z, c.ramp_min_volume_ratio, c.ramp_min_direction, c.ramp_min_share,
                    c.ramp_min_trades],
        "quote_stuffing": [c.qs_fast_ms, c.qs_slow_ms, c.qs_min_messages, c.qs_burst_ratio, c.qs_max_trade_ratio],
        "momentum_ignition": [c.mi_max_gap_ms, c.mi_min_trades, c.mi_min_move_bps, c.mi_window_ms, c.mi_min_retrace,
                              c.mi_min_unwind, c.mi_min_share],
    }[name]
    return np.array(common + own, np.float64)


_INIT: dict[str, Callable[[SurveillanceConfig], tuple]] = {
    "spoofing": lambda c: nb.spoofing_init(),
    "layering": lambda c: nb.layering_init(),
    "wash_trading": lambda c: nb.wash_init(int(c.wash_max_edges), c.linked_groups),
    "ramping": lambda c: nb.ramping_init(int(c.ramp_window_buckets), int(c.ramp_max_trades)),
    "quote_stuffing": lambda c: nb.quote_stuffing_init(),
    "momentum_ignition": lambda c: nb.momentum_ignition_init(int(c.mi_max_active)),
}
_KERNEL = {
    "spoofing": nb.spoofing_nb,
    "layering": nb.layering_nb,
    "wash_trading": nb.wash_trading_nb,
    "ramping": nb.ramping_nb,
    "quote_stuffing": nb.quote_stuffing_nb,
    "momentum_ignition": nb.momentum_ignition_nb,
}


class DetectorState(NamedTuple):
    name: str
    cfg: np.ndarray  # config_vector(name, config)
    kernel_state: tuple  # the kernel's own state (a NamedTuple of arrays and Tables)
    out: nb.AlertBuffer


def detector_init(name: str, config: SurveillanceConfig | None = None) -> DetectorState:
    """Fresh state of detector `name` (one of DETECTORS)."""
    if name not in _KERNEL:
        raise ValueError(f"unknown detector {name!r}; choose from {list(DETECTORS)}")
    config = config or SurveillanceConfig()
    capacity = _OUT_CAPACITY + int(config.mi_max_active)  # momentum ignition can fire per watched burst
    return DetectorState(name, config_vector(name, config), _INIT[name](config), nb.alert_buffer(capacity))


def event_arrays(ev: Events) -> nb.EventArrays:
    return nb.EventArrays(ev.ts, ev.kind, ev.order_id, ev.participant, ev.counterparty, ev.side, ev.price, ev.size,
                          ev.mid, ev.id)


def detector_update(state: DetectorState, events: Events | nb.EventArrays) -> tuple[DetectorState, list[Alert]]:
    """Run the detector over `events` (the stream's next batch); return (new state, alerts in order)."""
    ev = event_arrays(events) if isinstance(events, Events) else events
    kernel = _KERNEL[state.name]
    alerts: list[Alert] = []
    i, n = 0, len(ev.ts)
    while i < n:
        i, status = kernel(ev, i, state.cfg, state.kernel_state, state.out)
        alerts.extend(_drain(state.name, state.out))
        if status == nb.GROW:
            state = state._replace(kernel_state=_grown(state.kernel_state))
    return state, alerts


def detect(events: Events, config: SurveillanceConfig | None = None, detectors=DETECTORS) -> list[Alert]:
    """Every alert of the given detectors over a whole stream, ordered by time (stable)."""
    alerts: list[Alert] = []
    for name in detectors:
        _, found = detector_update(detector_init(name, config), events)
        alerts.extend(found)
    alerts.sort(key=lambda a: a.ts)
    return alerts


def _grown(kernel_state: tuple) -> tuple:
    changes = {f: nb.grow(t) for f, t in kernel_state._asdict().items()
               if isinstance(t, nb.Table) and 2 * t.count[0] >= t.keys.size}
    return kernel_state._replace(**changes)


def _drain(name: str, out: nb.AlertBuffer) -> list[Alert]:
    n = int(out.n[0])
    names = MEASURES[name]
    alerts = []
    for r in range(n):
        info = out.info[r]
        alerts.append(Alert(
            detector=DETECTORS[int(info[nb.I_DET])], level=AlertLevel(int(info[nb.I_LEVEL])), ts=int(info[nb.I_TS]),
            start_ts=int(info[nb.I_START]), end_ts=int(info[nb.I_END]),
            participants=tuple(int(p) for p in out.parts[r, :info[nb.I_NPART]]),
            event_ids=tuple(int(e) for e in out.events[r, :info[nb.I_NEV]]),
            measures={k: float(v) for k, v in zip(names, out.measures[r])}, trigger_id=int(info[nb.I_EID])))
    out.n[0] = 0
    return alerts
