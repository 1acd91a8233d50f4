"""Bad input raises ValueError / IndexError / TypeError / MemoryError with infoloss's messages, and nothing crashes
the interpreter: wrong dtypes and ranks, empty and 0-d arrays, NaN, huge broadcast shapes, too many dimensions,
concurrent calls, and a Rust panic at the boundary."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import warnings

import numpy as np
import pytest

import infoloss

X = np.zeros((4, 5))
Y = np.array([0, 1, 1, 1])


# ------------------------------------------------------------------------------------------ core messages


def test_out_of_range_targets_are_index_errors_naming_index_and_value():
    with pytest.raises(IndexError, match=r"^cross_entropy: target 5 at \[1\] is out of range for 5 classes$"):
        infoloss.cross_entropy(X, np.array([0, 5, 1, 1]))
    with pytest.raises(IndexError, match=r"^nll_loss: target -1 at \[2\] is out of range for 5 classes$"):
        infoloss.nll_loss(X, np.array([0, 1, -1, 1]))
    with pytest.raises(IndexError, match=r"target 7 at \[1, 2\]"):
        infoloss.cross_entropy(np.zeros((2, 5, 3)), np.array([[0, 1, 2], [0, 1, 7]]))
    # the ignore_index may lie outside [0, C) (torch checks the range after the ignore test)
    assert infoloss.cross_entropy(X, np.array([0, -100, 1, 1]), reduction="sum") > 0
    with pytest.raises(IndexError):
        infoloss.cross_entropy_with_grad(X, np.array([0, 9, 1, 1]))


def test_shape_errors_name_both_shapes():
    with pytest.raises(ValueError, match=r"input shape \[4, 5\] and target shape \[3\]"):
        infoloss.cross_entropy(X, np.array([0, 1, 1]))
    with pytest.raises(ValueError, match=r"weight shape \[4\]"):
        infoloss.nll_loss(X, Y, weight=np.ones(4))
    with pytest.raises(ValueError, match=r"weight must be 1-D"):
        infoloss.cross_entropy(X, Y, weight=np.ones((1, 5)))
    with pytest.raises(ValueError, match=r"input shape \[2\] and target shape \[3\]"):
        infoloss.binary_cross_entropy(np.array([0.2, 0.5]), np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"\[4, 5\].*\[4, 3\]"):
        infoloss.kl_div(X, np.ones((4, 3)), reduction="sum")
    with pytest.raises(ValueError):
        infoloss.binary_cross_entropy_with_logits(X, np.ones((4, 5)), pos_weight=np.ones(4))
    with pytest.raises(ValueError):
        infoloss.binary_cross_entropy_with_logits(X, np.ones((4, 5)), weight=np.ones((2, 4, 5)))


def test_option_and_value_errors():
    with pytest.raises(ValueError, match=r"label_smoothing = 1\.5"):
        infoloss.cross_entropy(X, Y, label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"input value 1\.5 at \[1\] is outside \[0, 1\]"):
        infoloss.binary_cross_entropy(np.array([0.2, 1.5]), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"input value NaN at \[0\]"):
        infoloss.binary_cross_entropy(np.array([np.nan, 0.5]), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="base"):
        infoloss.entropy([0.5, 0.5], base=-1.0)
    with pytest.raises(ValueError, match="does not fit in int64"):
        infoloss.cross_entropy(X, Y, ignore_index=2**70)
    with pytest.raises(TypeError, match="ignore_index must be an integer"):
        infoloss.cross_entropy(X, Y, ignore_index=1.5)
    with pytest.raises(TypeError, match="label_smoothing must be a real number"):
        infoloss.cross_entropy(X, Y, label_smoothing="a lot")
    with pytest.raises(NotImplementedError):
        infoloss.entropy([0.5, 0.5], nan_policy="omit")
    with pytest.raises(ValueError, match="contains nan"):
        infoloss.entropy([0.5, np.nan], nan_policy="raise")


def test_dimension_errors_are_both_index_and_value_errors():
    # torch raises IndexError for a bad dim, NumPy AxisError (a ValueError and an IndexError)
    for call in (
        lambda: infoloss.softmax(X, 2),
        lambda: infoloss.log_softmax(X, -3),
        lambda: infoloss.logsumexp(X, 5),
        lambda: infoloss.softmax_with_grad(X, 2),
    ):
        with pytest.raises(IndexError, match="dimension out of range"):
            call()
        with pytest.raises(ValueError):
            call()


def test_wrong_ranks():
    with pytest.raises((ValueError, TypeError)):
        infoloss.cross_entropy(np.float64(1.0), np.array(0))
    with pytest.raises(ValueError):
        infoloss.nll_loss(X, np.zeros((4, 5), dtype=np.int64))
    with pytest.raises(ValueError):
        infoloss.nll_loss(np.zeros((2, 3, 4)), np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError, match="at most 32"):
        infoloss.softmax(np.zeros((1,) * 33), 0)


def test_unconvertible_objects():
    with pytest.raises(TypeError):
        infoloss.softmax(None, 0)
    with pytest.raises(TypeError):
        infoloss.softmax("abc", 0)
    with pytest.raises(TypeError):
        infoloss.cross_entropy(X, Y, weight=object())
    with pytest.raises(ValueError, match="cannot be converted"):
        infoloss.softmax([[1.0], [1.0, 2.0]], 0)
    with pytest.raises(TypeError):
        infoloss.entropy(np.array(["a", "b"]))


# ----------------------------------------------------------------------------------- edge-case values


def test_empty_inputs_behave_as_torch():
    e, ey = np.zeros((0, 5)), np.zeros(0, dtype=np.int64)
    assert np.isnan(infoloss.cross_entropy(e, ey))
    assert infoloss.cross_entropy(e, ey, reduction="sum") == 0.0
    assert infoloss.cross_entropy(e, ey, reduction="none").shape == (0,)
    loss, g = infoloss.cross_entropy_with_grad(e, ey)
    assert np.isnan(loss) and g.shape == (0, 5)
    assert np.isnan(infoloss.nll_loss(e, ey))
    assert np.isnan(infoloss.kl_div(e, e, reduction="batchmean"))
    assert infoloss.binary_cross_entropy(e, e, reduction="sum") == 0.0
    assert infoloss.softmax(np.zeros((0, 3)), 1).shape == (0, 3)
    assert infoloss.log_softmax(np.zeros((3, 0)), 1).shape == (3, 0)
    assert np.all(infoloss.logsumexp(np.zeros((3, 0)), 1) == -np.inf)
    assert infoloss.entr(np.zeros(0)).shape == (0,)


def test_all_targets_ignored_gives_nan_and_zero_gradient():
    loss, g = infoloss.cross_entropy_with_grad(X + 1.0, np.full(4, -100), label_smoothing=0.2)
    assert np.isnan(loss) and np.all(g == 0)


def test_zero_dimensional_arrays():
    assert float(infoloss.softmax(np.float64(2.0), 0)) == 1.0
    assert float(infoloss.log_softmax(np.array(2.0), -1)) == 0.0
    assert float(infoloss.logsumexp(np.array(2.0), 0)) == 2.0
    assert infoloss.binary_cross_entropy(np.float64(0.5), np.float64(1.0)) == pytest.approx(np.log(2), rel=1e-15)
    # batchmean of a 0-d input divides by nothing (torch: input.dim() == 0)
    assert infoloss.kl_div(np.float64(-1.0), np.float64(0.5), reduction="batchmean") == pytest.approx(
        0.5 * (np.log(0.5) + 1.0), rel=1e-15
    )
    assert float(infoloss.entr(0.0)) == 0.0


def test_nan_and_inf_propagate_as_in_torch():
    x = np.array([[0.0, np.nan, 1.0], [0.0, 1.0, 2.0]])
    loss, g = infoloss.cross_entropy_with_grad(x, np.array([0, 2]), reduction="none")
    assert np.isnan(loss[0]) and np.all(np.isnan(g[0])) and np.isfinite(loss[1]) and np.all(np.isfinite(g[1]))
    # a target class whose logit is -inf: infinite loss, finite gradient
    loss, g = infoloss.cross_entropy_with_grad(np.array([[0.0, -np.inf, 1.0]]), np.array([1]))
    assert loss == np.inf and np.all(np.isfinite(g))
    # rows of all -inf give NaN
    assert np.all(np.isnan(infoloss.softmax(np.full((1, 3), -np.inf), 1)))
    # kl_div's target gradient is NaN where the target is 0
    _, _, gt = infoloss.kl_div_with_grad(np.log([0.2, 0.8, 0.5]), np.array([0.2, 0.8, 0.0]), reduction="sum",
                                         return_target_grad=True)
    assert np.isnan(gt[2]) and np.all(np.isfinite(gt[:2]))


# ----------------------------------------------------------------------------------------------- crashes


def run_isolated(code: str) -> subprocess.CompletedProcess:
    """Runs ``code`` in a fresh interpreter, so a crash fails this test instead of killing pytest."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )


def test_huge_broadcast_shapes_raise_memory_error_instead_of_aborting():
    r = run_isolated(
        """
        import numpy as np, infoloss, warnings
        warnings.simplefilter("ignore")
        z = np.float32(0)
        calls = [
            lambda: infoloss.softmax(np.broadcast_to(z, (2**40,)), 0),
            lambda: infoloss.log_softmax_with_grad(np.broadcast_to(z, (2**20, 2**20)), 1),
            lambda: infoloss.logsumexp(np.broadcast_to(z, (2**41,)), 0),
            lambda: infoloss.cross_entropy(np.broadcast_to(z, (2**38, 4)), np.broadcast_to(np.int64(0), (2**38,)),
                                           reduction="none"),
            lambda: infoloss.nll_loss(np.broadcast_to(z, (2**38, 4)), np.broadcast_to(np.int64(0), (2**38,))),
            lambda: infoloss.kl_div(np.broadcast_to(z, (2**20, 1)), np.broadcast_to(z, (1, 2**20)),
                                    reduction="sum"),
            lambda: infoloss.binary_cross_entropy(np.broadcast_to(z, (2**40,)), np.broadcast_to(z, (2**40,))),
            lambda: infoloss.binary_cross_entropy_with_logits(np.broadcast_to(z, (2**40,)),
                                                              np.broadcast_to(z, (2**40,))),
            lambda: infoloss.entr(np.broadcast_to(z, (2**40,))),
            lambda: infoloss.rel_entr(np.broadcast_to(z, (2**20, 1)), np.broadcast_to(z, (1, 2**20))),
            lambda: infoloss.entropy(np.broadcast_to(z, (2**40,))),
            lambda: infoloss.jensenshannon(np.broadcast_to(z, (2**40,)), np.broadcast_to(z, (2**40,))),
            lambda: infoloss.self_information(np.broadcast_to(z, (2**40,))),
        ]
        for i, call in enumerate(calls):
            try:
                call()
            except (MemoryError, ValueError) as e:
                continue
            raise SystemExit(f"call {i} did not raise")
        print("OK")
        """
    )
    assert r.returncode == 0 and r.stdout.strip() == "OK", (r.returncode, r.stdout, r.stderr[-2000:])


def test_a_rust_panic_becomes_runtime_error():
    r = run_isolated(
        """
        import infoloss
        try:
            infoloss._infoloss._panic_for_tests()
        except RuntimeError as e:
            assert "internal error in infoloss" in str(e) and "deliberate panic" in str(e), e
            print("OK")
        """
    )
    assert r.returncode == 0 and r.stdout.strip() == "OK", (r.returncode, r.stdout, r.stderr[-2000:])
    # and the interpreter keeps working afterwards
    with pytest.raises(RuntimeError, match="internal error"):
        infoloss._infoloss._panic_for_tests()
    assert infoloss.cross_entropy([[0.0, 0.0]], [0]) == pytest.approx(np.log(2))


def test_concurrent_calls_from_many_threads():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(256, 50)).astype(np.float32)
    y = rng.integers(0, 50, size=256)
    ref = infoloss.cross_entropy_with_grad(x, y, label_smoothing=0.1)
    errors = []

    def work():
        try:
            for _ in range(20):
                loss, g = infoloss.cross_entropy_with_grad(x, y, label_smoothing=0.1)
                assert loss == ref[0] and np.array_equal(g, ref[1])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_the_private_module_rejects_unconverted_arrays_cleanly():
    # the extension itself (normally called with converted arguments) raises TypeError for anything else
    _C = infoloss._infoloss
    with pytest.raises(TypeError, match="must be a float16, float32 or float64 array"):
        _C.softmax(np.zeros(3, dtype=np.int64), 0)
    with pytest.raises(TypeError, match="must be a float16, float32 or float64 array"):
        _C.softmax([1.0, 2.0], 0)
    with pytest.raises(TypeError, match="must be a float32 array"):
        _C.kl_div(np.zeros(3, np.float32), np.zeros(3), ("sum", False), None, None, None, True, False, False)
    with pytest.raises(TypeError, match="int64 array of class indices"):
        _C.nll_loss(np.zeros((2, 3)), np.zeros(2, np.int32), (-100, "mean"), None, None, None, True, False)
    with pytest.raises(ValueError, match="not aligned"):
        raw = np.zeros(8 * 3 + 1, np.uint8)[1:].view(np.float64)
        _C.softmax(raw, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="not a valid value for reduction"):
            _C.kl_div(np.zeros(3), np.zeros(3), ("bogus", False), None, None, None, True, False, False)
