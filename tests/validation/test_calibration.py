import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.isotonic import IsotonicRegression

from bot4jax.kernels.isotonic_nb import pava_nb, pool_ties_nb
from bot4jax.validation import calibration, scoring
from bot4jax.validation.calibration import isotonic_fit


# ---- plain-Python references of the two kernels -------------------------------------------------

def pool_ties_ref(x, y, w):
    """Group equal x with a dict: weighted mean of y, summed weight, in ascending x."""
    groups = {}
    for xi, yi, wi in zip(x.tolist(), y.tolist(), w.tolist()):
        s = groups.setdefault(xi, [0.0, 0.0])
        s[0] += wi * yi
        s[1] += wi
    keys = sorted(groups)
    return (np.array(keys), np.array([groups[k][0] / groups[k][1] for k in keys]),
            np.array([groups[k][1] for k in keys]))


def pava_ref(y, w):
    """Textbook PAVA: merge any adjacent pair of blocks that violates the order until none does."""
    blocks = [[wi * yi, wi, 1] for yi, wi in zip(y.tolist(), w.tolist())]  # [sum wy, sum w, count]
    merged = True
    while merged:
        merged = False
        for k in range(len(blocks) - 1):
            a, b = blocks[k], blocks[k + 1]
            if a[0] / a[1] > b[0] / b[1]:
                blocks[k:k + 2] = [[a[0] + b[0], a[1] + b[1], a[2] + b[2]]]
                merged = True
                break
    return np.concatenate([np.full(c, s / sw) for s, sw, c in blocks])


def sk_predict(x, y, w, t):
    return IsotonicRegression(out_of_bounds="clip").fit(x, y, sample_weight=w).predict(t)


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(20261124)


# ---- kernels against the references --------------------------------------------------------------

def test_pava_kernel_equals_reference(rng):
    for n in (1, 2, 3, 10, 200):
        y = rng.normal(size=n) + np.linspace(0, 1, n)
        w = rng.uniform(0.1, 3.0, n)
        np.testing.assert_allclose(pava_nb(y, w), pava_ref(y, w), rtol=0, atol=1e-12)


def test_pool_ties_kernel_equals_reference(rng):
    x = rng.integers(0, 15, 300).astype(float)
    y = rng.normal(size=300)
    w = rng.uniform(0.1, 2.0, 300)
    got = pool_ties_nb(x, y, w, np.argsort(x))
    for g, r in zip(got, pool_ties_ref(x, y, w)):
        np.testing.assert_allclose(g, r, rtol=0, atol=1e-12)


# ---- against scikit-learn -----------------------------------------------------------------------

def _cases(rng):
    n = 400
    x = np.round(rng.normal(size=n), 1)  # many ties
    yield "ties", x, x + rng.normal(size=n), None
    yield "ties+weights", x, (rng.uniform(size=n) < 0.5 + 0.2 * np.tanh(x)).astype(float), rng.uniform(0, 3, n)
    w0 = rng.uniform(0, 1, n)
    w0[::5] = 0.0  # zero weights are dropped, as scikit-learn does
    yield "zero weights", x, rng.normal(size=n), w0
    yield "continuous", rng.uniform(size=n), rng.uniform(size=n), None
    yield "constant y", x, np.full(n, 0.3), rng.uniform(0.5, 1, n)
    xs = np.sort(rng.uniform(size=n))
    yield "already monotone", xs, np.sort(rng.normal(size=n)), None
    yield "decreasing", xs, -xs, None
    yield "single point", np.array([0.4]), np.array([0.7]), None
    yield "one x many y", np.full(20, 2.0), rng.normal(size=20), rng.uniform(0.1, 1, 20)
    yield "two points", np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([1.0, 3.0])


def test_equals_scikit_learn_in_and_outside_the_fitted_range(rng):
    for name, x, y, w in _cases(rng):
        lo, hi = x.min(), x.max()
        t = np.r_[np.linspace(lo - 2, hi + 2, 301), x, lo - 1e9, hi + 1e9]  # includes clipping
        got = isotonic_fit(x, y, w).predict(t)
        np.testing.assert_allclose(got, sk_predict(x, y, w, t), rtol=0, atol=1e-12, err_msg=name)


def test_special_shapes():
    xs = np.linspace(0, 1, 50)
    dec = isotonic_fit(xs, -xs).predict(xs)
    np.testing.assert_allclose(dec, np.full(50, -0.5), atol=1e-14)  # decreasing y pools to its mean
    up = np.sort(np.random.default_rng(1).normal(size=50))
    np.testing.assert_array_equal(isotonic_fit(xs, up).predict(xs), up)  # monotone y is its own fit
    one = isotonic_fit([0.4], [0.7])
    np.testing.assert_array_equal(one.predict([-5.0, 0.4, 9.0]), [0.7, 0.7, 0.7])
    cal = isotonic_fit([0.0, 1.0], [0.2, 0.6])
    np.testing.assert_allclose(cal.predict([-1.0, 0.25, 2.0]), [0.2, 0.3, 0.6])  # clip, interpolate


def test_calibrator_is_immutable():
    cal = isotonic_fit([0.0, 1.0, 2.0], [0.0, 1.0, 0.5])
    with pytest.raises(AttributeError):
        cal.x_knots = np.zeros(2)
    with pytest.raises(ValueError):
        cal.y_knots[0] = 5.0
    assert cal.n_fit == 3


# ---- properties ---------------------------------------------------------------------------------

_floats = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@st.composite
def _data(draw):
    n = draw(st.integers(1, 40))
    x = np.array(draw(st.lists(st.integers(-8, 8), min_size=n, max_size=n)), dtype=float)
    y = np.array(draw(st.lists(_floats, min_size=n, max_size=n)))
    w = np.array(draw(st.lists(st.floats(0.01, 10.0), min_size=n, max_size=n)))
    return x, y, w


@settings(max_examples=60, deadline=None)
@given(_data())
def test_predictions_are_non_decreasing(data):
    x, y, w = data
    t = np.linspace(x.min() - 1, x.max() + 1, 97)
    p = isotonic_fit(x, y, w).predict(t)
    assert np.all(np.diff(p) >= -1e-9 * (1 + np.abs(p[1:])))


@settings(max_examples=60, deadline=None)
@given(_data())
def test_weighted_mean_is_preserved(data):
    x, y, w = data
    fitted = isotonic_fit(x, y, w).predict(x)
    scale = 1.0 + np.abs(y).max()
    assert np.sum(w * fitted) / np.sum(w) == pytest.approx(np.sum(w * y) / np.sum(w), abs=1e-9 * scale)


# ---- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "x, y, w, match",
    [
        ([0.0, np.nan, 1.0], [0, 1, 1], None, r"x has a non-finite value at index 1"),
        ([0.0, 0.5, 1.0], [0, np.inf, 1], None, r"y has a non-finite value at index 1"),
        ([0.0, 0.5, 1.0], [0, 1], None, r"length mismatch: x has 3 points, y has 2"),
        ([0.0, 0.5, 1.0], [0, 1, 1], [1.0, 1.0], r"length mismatch: x has 3 points, sample_weight has 2"),
        ([0.0, 0.5, 1.0], [0, 1, 1], [1.0, -0.5, 1.0], r"sample_weight is negative at index 1"),
        ([0.0, 0.5, 1.0], [0, 1, 1], [1.0, np.nan, 1.0], r"sample_weight has a non-finite value"),
        ([0.0, 0.5, 1.0], [0, 1, 1], [0.0, 0.0, 0.0], r"sample_weight is zero everywhere"),
        ([], [], None, r"x is empty"),
        (np.zeros((2, 2)), [0, 1], None, r"x must be 1-D"),
    ],
)
def test_bad_input_raises_naming_the_problem(x, y, w, match):
    with pytest.raises(ValueError, match=match):
        isotonic_fit(x, y, w)


def test_predict_rejects_nan():
    with pytest.raises(ValueError, match=r"x has a non-finite value at index 2"):
        isotonic_fit([0.0, 1.0], [0.0, 1.0]).predict([0.5, 0.1, np.nan])


# ---- scores -------------------------------------------------------------------------------------

def test_scores_are_those_of_scoring():
    assert calibration.brier_score is scoring.brier
    assert calibration.expected_calibration_error is scoring.expected_calibration_error


def test_isotonic_calibration_improves_brier_and_ece_out_of_sample(rng):
    n = 20_000
    s = rng.uniform(size=2 * n)
    y = (rng.uniform(size=2 * n) < s ** 3).astype(float)  # raw score s is badly calibrated
    cal = isotonic_fit(s[:n], y[:n])
    p = cal.predict(s[n:])
    ys = y[n:]
    assert calibration.brier_score(p, ys) < calibration.brier_score(s[n:], ys) - 0.02
    assert calibration.expected_calibration_error(p, ys) < 0.02 < calibration.expected_calibration_error(s[n:], ys)
