"""The one registry of public transforms and aliases.

Every entry here automatically gets the contract tests of ``test_contract.py``
(jit, no recompilation, tree structure, shapes and dtypes kept, state
structure stable, convergence on a parabola and on Rosenbrock). Adding an
optimizer to ``REGISTRY`` is all it takes.

``make(learning_rate)`` builds the transform. ``kind`` says how to test it:

- ``"optimizer"``: ``make(lr)`` returns updates to add to the params (descent);
- ``"direction"``: ``make(lr)`` returns a descent *direction* (like
  ``scale_by_adam``); the tests chain it with ``scale(-lr)``;
- ``"other"``: no convergence test (clipping alone, ``set_to_zero``, ...).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

import adaptx
import adaptx.fused


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    make: Callable[[float], adaptx.GradientTransformation]
    kind: str = "optimizer"
    lr: float = 0.1  # learning rate for the parabola
    rosenbrock_lr: float = 1e-3
    rosenbrock_steps: int = 20000
    rosenbrock_tol: float = 5e-2  # distance to the optimum (1, 1)
    complex_ok: bool = False  # supports complex parameters
    needs_params: bool = False  # update() requires params
    # Shapes/dtypes of updates equal the params' (False for transforms whose
    # contract is different, which must then say why in a comment).
    keeps_dtype: bool = True
    # Sharded vs one-device runs (test_sharding.py): float32 sums in another order.
    sharding_rtol: float = 2e-5
    # Non-finite gradients propagate: a NaN (or an Inf) in one gradient element
    # gives a non-finite update of that element at that step (test_nonfinite.py).
    # A transform that hides them on purpose says why here; an empty string
    # means it must not. ``hides_nan`` covers Infs too.
    hides_nan: str = ""
    hides_inf: str = ""

    def __str__(self) -> str:
        return self.name


def _sgd(lr):
    return adaptx.chain(adaptx.identity(), adaptx.scale_by_learning_rate(lr))


def _is_scalar(params):
    return jax.tree.map(lambda x: jnp.size(x) == 1, params)


def _is_vector(params):
    return jax.tree.map(lambda x: jnp.size(x) > 1, params)


def _loss_fed(tx):
    """``tx`` given ``value=`` (the updates' squared norm, a stand-in loss) on every update."""

    def update(updates, state, params=None, **extra_args):
        value = jnp.square(adaptx.global_norm(updates))
        return tx.update(updates, state, params, value=value, **extra_args)

    return adaptx.GradientTransformation(tx.init, update)


def _size_labels(params):
    return jax.tree.map(lambda x: "vec" if jnp.size(x) > 1 else "scalar", params)


REGISTRY: list[Entry] = [
    # --- foundation -----------------------------------------------------------
    Entry("identity", lambda lr: adaptx.identity(), kind="direction", complex_ok=True),
    Entry("scale", lambda lr: adaptx.scale(-lr), complex_ok=True),
    Entry("scale_by_learning_rate", lambda lr: adaptx.scale_by_learning_rate(lr), complex_ok=True),
    Entry(
        "scale_by_learning_rate[schedule]",
        lambda lr: adaptx.scale_by_learning_rate(adaptx.exponential_decay(lr, 1000, 0.99)),
        complex_ok=True,
    ),
    Entry(
        "scale_by_schedule",
        lambda lr: adaptx.scale_by_schedule(adaptx.constant_schedule(1.0)),
        kind="direction",
        complex_ok=True,
    ),
    Entry(
        "set_to_zero",
        lambda lr: adaptx.set_to_zero(),
        kind="other",
        complex_ok=True,
        hides_nan="its updates are zero whatever the gradients (frozen parameters)",
    ),
    Entry(
        "stateless",
        lambda lr: adaptx.stateless(lambda u, p: jax.tree.map(lambda g: -lr * g, u)),
        complex_ok=True,
    ),
    Entry("chain", _sgd, complex_ok=True),
    Entry(
        "named_chain",
        lambda lr: adaptx.named_chain(
            ("direction", adaptx.identity()), ("lr", adaptx.scale_by_learning_rate(lr))
        ),
        complex_ok=True,
    ),
    # --- seed optimizers ------------------------------------------------------
    # SGD family (adaptx/_sgd.py, _adagrad.py, _rmsprop.py, _adadelta.py) ........
    Entry("sgd", lambda lr: adaptx.sgd(lr), complex_ok=True),
    Entry("sgd[momentum]", lambda lr: adaptx.sgd(lr, 0.9), complex_ok=True),
    Entry("sgd[nesterov]", lambda lr: adaptx.sgd(lr, 0.9, nesterov=True), complex_ok=True),
    Entry("trace", lambda lr: adaptx.trace(0.9), kind="direction", complex_ok=True),
    Entry(
        "trace[nesterov,float32 accumulator]",
        lambda lr: adaptx.trace(0.9, nesterov=True, accumulator_dtype="float32"),
        kind="direction",
    ),
    Entry("ema", lambda lr: adaptx.ema(0.9), kind="direction", complex_ok=True),
    Entry(
        "ema[no debias]",
        lambda lr: adaptx.ema(0.9, debias=False),
        kind="direction",
        complex_ok=True,
    ),
    Entry("adagrad", lambda lr: adaptx.adagrad(lr), rosenbrock_lr=0.1, complex_ok=True),
    Entry(
        "adagrad[optax form]",
        lambda lr: adaptx.adagrad(lr, 0.1, 1e-7, eps_in_sqrt=True),
        rosenbrock_lr=0.1,
        complex_ok=True,
    ),
    Entry(
        "scale_by_rss",
        lambda lr: adaptx.scale_by_rss(),
        kind="direction",
        rosenbrock_lr=0.1,
        complex_ok=True,
    ),
    Entry("rmsprop", lambda lr: adaptx.rmsprop(lr), complex_ok=True),
    Entry(
        "rmsprop[torch: centered, momentum]",
        lambda lr: adaptx.rmsprop(
            lr, 0.99, eps_in_sqrt=False, centered=True, momentum=0.9, lr_before_momentum=False
        ),
        lr=0.01,
        complex_ok=True,
        # The centred variance n - m**2 cancels, and the momentum sums g / sqrt(.) over
        # steps: a pmap run differed from the one-device run by 1.5e-5 relative on a
        # momentum element, half of the default bound with its atol: too close.
        sharding_rtol=1e-4,
    ),
    Entry(
        "rmsprop[nesterov,bias_correction]",
        lambda lr: adaptx.rmsprop(lr, momentum=0.9, nesterov=True, bias_correction=True),
        lr=0.01,
        complex_ok=True,
    ),
    Entry("scale_by_rms", lambda lr: adaptx.scale_by_rms(), kind="direction", complex_ok=True),
    Entry(
        "scale_by_stddev", lambda lr: adaptx.scale_by_stddev(), kind="direction", complex_ok=True
    ),
    # AdaDelta's step does not decay: in Rosenbrock's curved valley it keeps
    # bouncing at an amplitude that grows with the learning rate (0.8 from the
    # optimum after 20000 steps with lr = 1, 1.3e-3 with lr = 0.01).
    Entry("adadelta", lambda lr: adaptx.adadelta(lr), lr=1.0, rosenbrock_lr=0.01, complex_ok=True),
    Entry(
        "scale_by_adadelta",
        lambda lr: adaptx.scale_by_adadelta(),
        kind="direction",
        lr=1.0,
        rosenbrock_lr=0.01,
        complex_ok=True,
    ),
    # ... end SGD family
    # --- Adam family (adam-family) ---
    Entry("adam", lambda lr: adaptx.adam(lr), complex_ok=True),
    Entry("adam[nesterov]", lambda lr: adaptx.adam(lr, nesterov=True), complex_ok=True),
    Entry("adamw", lambda lr: adaptx.adamw(lr, weight_decay=1e-4), complex_ok=True),
    # AMSGrad keeps Rosenbrock's first, large gradient in v_max for good: its steps stay
    # small, so it needs 1e-2 where Adam gets there with 1e-3.
    Entry("amsgrad", lambda lr: adaptx.amsgrad(lr), rosenbrock_lr=1e-2, complex_ok=True),
    Entry(
        "amsgrad[paper]",
        lambda lr: adaptx.amsgrad(lr, variant="paper"),
        rosenbrock_lr=1e-2,
        complex_ok=True,
    ),
    Entry("adamax", lambda lr: adaptx.adamax(lr), complex_ok=True),
    Entry("nadam", lambda lr: adaptx.nadam(lr), complex_ok=True),
    Entry("radam", lambda lr: adaptx.radam(lr), complex_ok=True),
    Entry("scale_by_adam", lambda lr: adaptx.scale_by_adam(), kind="direction", complex_ok=True),
    Entry(
        "scale_by_adam[b1_decay]",
        lambda lr: adaptx.scale_by_adam(b1_decay=1 - 1e-4),
        kind="direction",
        complex_ok=True,
    ),
    Entry(
        "scale_by_adamax", lambda lr: adaptx.scale_by_adamax(), kind="direction", complex_ok=True
    ),
    Entry(
        "scale_by_amsgrad",
        lambda lr: adaptx.scale_by_amsgrad(),
        kind="direction",
        rosenbrock_lr=1e-2,
        complex_ok=True,
    ),
    Entry("scale_by_nadam", lambda lr: adaptx.scale_by_nadam(), kind="direction", complex_ok=True),
    Entry("scale_by_radam", lambda lr: adaptx.scale_by_radam(), kind="direction", complex_ok=True),
    Entry(
        "add_decayed_weights",
        lambda lr: adaptx.add_decayed_weights(1e-4),
        kind="direction",
        complex_ok=True,
        needs_params=True,
    ),
    # --- end Adam family ---
    # --- optimizers beyond the seed papers (issue 15: sign-based, Adam variants, layer-wise) ---
    # Sign-based steps have a fixed length lr per coordinate: they end oscillating within lr of
    # the optimum, so the parabola (atol 1e-2) needs lr = 5e-3 (2.0 away: 400 steps).
    # signSGD's steps are (+-lr, +-lr): in Rosenbrock's curved valley it zig-zags and creeps
    # (0.28 from the optimum after 20000 steps of 3e-4, 0.8 with 2e-3). Momentum (signum, lion)
    # smooths the zig-zag and gets there.
    Entry(
        "sign_sgd",
        lambda lr: adaptx.sign_sgd(lr),
        lr=5e-3,
        rosenbrock_lr=3e-4,
        rosenbrock_tol=0.35,
        complex_ok=True,
        hides_inf="sign(+-inf) = +-1: an infinite element takes a full-length step (as optax)",
    ),
    Entry(
        "signum",
        lambda lr: adaptx.signum(lr),
        lr=3e-3,
        complex_ok=True,
        hides_inf="sign(+-inf) = +-1: an infinite element takes a full-length step (as optax)",
    ),
    Entry(
        "lion",
        lambda lr: adaptx.lion(lr),
        lr=5e-3,
        complex_ok=True,
        hides_inf="sign(+-inf) = +-1: an infinite element takes a full-length step (as optax)",
    ),
    Entry("adabelief", lambda lr: adaptx.adabelief(lr), complex_ok=True),
    # Yogi's eps = 1e-3 is large next to Rosenbrock's gradients near the optimum: lr 1e-2.
    Entry("yogi", lambda lr: adaptx.yogi(lr), rosenbrock_lr=1e-2, complex_ok=True),
    # ADOPT divides by the second moment of the steps before: with the default b2 = 0.9999 it
    # remembers Rosenbrock's first, large gradients for ~10^4 steps (0.48 from the optimum after
    # 20000 steps with lr = 1e-2); b2 = 0.999 gets there (3e-5 with lr = 3e-3).
    Entry(
        "adopt",
        lambda lr: adaptx.adopt(lr, b2=0.999),
        rosenbrock_lr=3e-3,
        complex_ok=True,
        hides_inf="its clipping maps an infinite normalised gradient to +-t**0.25 (as optax)",
    ),
    Entry(
        "ademamix[warm-up schedules]",
        lambda lr: adaptx.ademamix(
            lr,
            b3=adaptx.ademamix_b3_schedule(0.999, 500),
            alpha=adaptx.ademamix_alpha_schedule(5.0, 500),
        ),
        complex_ok=True,
    ),
    # Trust-ratio steps have length lr * ||params||, whatever the gradient: with a constant lr
    # they end oscillating at that amplitude. The papers decay the learning rate; so do these
    # rows (by 0.7 every 100 steps), which reach Rosenbrock's optimum in 2000 steps.
    Entry(
        "lamb",
        lambda lr: adaptx.lamb(adaptx.exponential_decay(lr, 100, 0.7), weight_decay=1e-4),
        lr=0.05,
        rosenbrock_lr=0.1,
        rosenbrock_steps=2000,
        complex_ok=True,
    ),
    Entry(
        "lars",
        lambda lr: adaptx.lars(adaptx.exponential_decay(lr, 100, 0.7), 1e-4, trust_coefficient=0.1),
        lr=0.3,
        rosenbrock_lr=0.2,
        rosenbrock_steps=2000,
        complex_ok=True,
        needs_params=True,  # its first stage is add_decayed_weights
    ),
    Entry(
        "scale_by_trust_ratio",
        lambda lr: adaptx.chain(
            adaptx.scale_by_trust_ratio(),
            adaptx.scale_by_learning_rate(adaptx.exponential_decay(lr, 100, 0.7)),
        ),
        lr=0.05,
        rosenbrock_lr=0.2,
        rosenbrock_steps=2000,
        complex_ok=True,
        needs_params=True,
    ),
    # --- end optimizers beyond the seed papers ---
    # --- combinators and wrappers ---------------------------------------------
    # The inner optimizer is SGD with momentum (stateful); masks and labels
    # depend on leaf size so the contract's scalar "s" is masked out / frozen
    # while the parabola and Rosenbrock vectors are optimized.
    Entry(
        "masked",
        lambda lr: adaptx.masked(adaptx.scale_by_adam(), _is_vector),
        kind="direction",  # masked-out leaves keep the raw gradient: both descend
        complex_ok=True,
    ),
    Entry(
        "partition",
        lambda lr: adaptx.partition(
            {"vec": adaptx.sgd(lr, 0.9), "scalar": adaptx.sgd(lr / 2)}, _size_labels
        ),
        complex_ok=True,
    ),
    Entry(
        "freeze",
        lambda lr: adaptx.chain(adaptx.freeze(_is_scalar), adaptx.sgd(lr, 0.9)),
        complex_ok=True,
    ),
    Entry(
        "clip",
        lambda lr: adaptx.clip(1.0),
        kind="direction",
        complex_ok=True,
        hides_inf="an infinite element is clipped to +-max_delta, like any large one (as optax)",
    ),
    Entry(
        "clip_by_global_norm",
        lambda lr: adaptx.clip_by_global_norm(1.0),
        kind="direction",
        complex_ok=True,
    ),
    Entry(
        "clip_by_block_rms",
        lambda lr: adaptx.clip_by_block_rms(1.0),
        kind="direction",
        complex_ok=True,
    ),
    Entry(
        "apply_if_finite",
        lambda lr: adaptx.apply_if_finite(adaptx.sgd(lr, 0.9), 3),
        complex_ok=True,
        hides_nan="the documented guard: skips a non-finite step (applies it past the limit)",
    ),
    Entry(
        "zero_nans",
        lambda lr: adaptx.zero_nans(),
        kind="direction",
        complex_ok=True,
        hides_nan="the documented guard: zeroes NaN and Inf elements",
    ),
    # One inner step per two calls: twice the steps for the same Rosenbrock progress.
    Entry(
        "MultiSteps",
        lambda lr: adaptx.MultiSteps(adaptx.sgd(lr, 0.9), 2),
        rosenbrock_steps=40000,
        complex_ok=True,
    ),
    Entry(
        "lookahead",
        lambda lr: adaptx.lookahead(adaptx.sgd(lr, 0.9), sync_period=5, slow_step_size=0.5),
        rosenbrock_steps=40000,  # slow steps of 0.5: about half the progress per step
        needs_params=True,
        complex_ok=True,
    ),
    Entry(
        "inject_hyperparams",
        lambda lr: adaptx.inject_hyperparams(adaptx.sgd)(lr, 0.9),
        complex_ok=True,
    ),
    Entry(
        "inject_hyperparams[adamw]",
        lambda lr: adaptx.inject_hyperparams(adaptx.adamw)(lr, weight_decay=1e-4, mask=_is_vector),
        complex_ok=True,
    ),
    Entry(
        "inject_hyperparams[schedule]",
        lambda lr: adaptx.inject_hyperparams(adaptx.sgd)(
            adaptx.exponential_decay(lr, 1000, 0.99), 0.9
        ),
        complex_ok=True,
    ),
    # --- beyond the seed papers (II): adafactor, transforms, plateau (issue 15) ---------
    # adafactor scales each step by the parameters' RMS, so it needs params; its steps are
    # relative (lr * RMS(x)), so Rosenbrock's needs a larger lr than Adam's absolute one.
    Entry(
        "adafactor",
        lambda lr: adaptx.adafactor(lr),
        needs_params=True,
        rosenbrock_lr=1e-2,
        complex_ok=True,
    ),
    # Factored statistics and momentum: small matrices factored (min_dim_size_to_factor=2).
    # Its momentum buffer is float32 (optax's dtype_momentum), real: no complex params.
    Entry(
        "adafactor[factored,momentum]",
        lambda lr: adaptx.adafactor(lr, min_dim_size_to_factor=2, momentum=0.9),
        needs_params=True,
        rosenbrock_lr=1e-2,
    ),
    Entry(
        "scale_by_factored_rms",
        lambda lr: adaptx.scale_by_factored_rms(min_dim_size_to_factor=2),
        kind="direction",
        complex_ok=True,
    ),
    Entry("centralize", lambda lr: adaptx.centralize(), kind="direction", complex_ok=True),
    # Clipping Rosenbrock's early gradients (100x the parameters' norm) slows the descent
    # into the valley: twice plain gradient descent's steps.
    Entry(
        "adaptive_grad_clip",
        lambda lr: adaptx.adaptive_grad_clip(1.0),
        kind="direction",
        rosenbrock_steps=40000,
        needs_params=True,
        complex_ok=True,
    ),
    Entry(
        "add_noise",
        lambda lr: adaptx.add_noise(0.01, 0.55, key=0),
        kind="direction",
        complex_ok=True,
    ),
    # Steps of a fixed length never settle on a constant learning rate: no convergence test.
    Entry(
        "normalize_by_update_norm",
        lambda lr: adaptx.normalize_by_update_norm(),
        kind="other",
        complex_ok=True,
    ),
    # reduce_on_plateau needs value= (the loss); _loss_fed passes the squared gradient norm.
    # Rosenbrock's gradient norm plateaus in the valley: the scale halves once (min_scale),
    # so twice the steps.
    Entry(
        "reduce_on_plateau",
        lambda lr: _loss_fed(adaptx.reduce_on_plateau(factor=0.5, patience=20, min_scale=0.5)),
        kind="direction",
        rosenbrock_steps=40000,
        complex_ok=True,
    ),
    # --- end beyond the seed papers (II) ---
    # --- matrix-aware optimizers: Muon and SOAP (adaptx/_muon.py, adaptx/_soap.py) ---
    # The contract's matrices (3 x 2 "w", the sharding suite's 4 x 8 and 8 x 4) go
    # through Newton-Schulz / SOAP's rotations; vectors and scalars through the Adam
    # fallbacks, which is what the parabola and Rosenbrock (1-D) exercise.
    Entry("muon", lambda lr: adaptx.muon(lr), needs_params=True),
    # max_precond_dim=4: the sharding suite's 4 x 8 and 8 x 4 matrices keep one factor,
    # the 4 x 4 one, which is full rank from the first gradient. A factor of rank < its
    # size (the 8 x 8 one of a 4 x 8 gradient) has a repeated zero eigenvalue whose
    # eigenvectors are not unique: a sharded and a single-device run, which round
    # differently, may pick different ones and then take different (equally valid)
    # steps. The 3 x 2 contract matrix still has both factors.
    Entry(
        "soap", lambda lr: adaptx.soap(lr, max_precond_dim=4), needs_params=True, rosenbrock_lr=1e-3
    ),
    # --- end matrix-aware optimizers ---
    # --- parameter-free and schedule-free (issue 16) -------------------------------
    # Schedule-Free averages towards z (needs params); D-Adaptation and Prodigy estimate
    # the step size (learning_rate is a multiplier on it, kept at its default 1).
    Entry(
        "schedule_free_adamw",
        lambda lr: adaptx.schedule_free_adamw(lr, warmup_steps=5),
        rosenbrock_lr=1e-2,
        needs_params=True,
    ),
    Entry(
        "schedule_free_sgd",
        lambda lr: adaptx.schedule_free_sgd(lr),
        rosenbrock_lr=2e-3,
        rosenbrock_steps=40000,
        needs_params=True,
    ),
    Entry(
        "schedule_free[adam]",
        lambda lr: adaptx.schedule_free(adaptx.adam(lr, b1=0.0), lr, b1=0.95),
        rosenbrock_lr=1e-2,
        needs_params=True,
    ),
    # d is a running maximum of ratios of global sums: the reduction order of a sharded
    # run (float32 rounding) moves it, and every step after. Prodigy stays within 2e-3;
    # D-Adaptation's numerator is a sum of signed products that nearly cancel in the
    # first steps, and its sharded runs differ by up to 5% on one coordinate after the
    # sharding suite's steps: only structure, shardings and the rough numbers are checked.
    #
    # On Rosenbrock both reach the optimum (within 1e-6) and then leave it: d never
    # shrinks, and with a constant learning rate (the papers decay it) the step that
    # crossed the valley is too long near the minimum, so the iterate later wanders
    # 0.01-1 away, at steps that move with float32 rounding (compiler, CPU). The runs
    # stop inside the converged window, measured under two XLA configurations:
    # D-Adaptation is within 1.2e-6 at steps 1000 and 1500, Prodigy within 6e-6 at
    # steps 4000, 5000 and 6000.
    Entry(
        "dadapt_adamw",
        lambda lr: adaptx.dadapt_adamw(),
        rosenbrock_steps=1500,
        rosenbrock_tol=1e-3,
        needs_params=True,
        sharding_rtol=0.1,
    ),
    Entry(
        "prodigy",
        lambda lr: adaptx.prodigy(),
        rosenbrock_steps=5000,
        rosenbrock_tol=1e-3,
        needs_params=True,
        sharding_rtol=2e-3,
    ),
    # --- end parameter-free and schedule-free ---
    # --- adaptx.fused: flat float32 state, one pass (adaptx/fused) -------------------
    Entry("fused.adamw", lambda lr: adaptx.fused.adamw(lr, weight_decay=1e-4), needs_params=True),
    Entry("fused.sgd", lambda lr: adaptx.fused.sgd(lr, 0.9, nesterov=True), lr=0.02),
    # --- end adaptx.fused ---
]


def by_name(name: str) -> Entry:
    for e in REGISTRY:
        if e.name == name:
            return e
    raise KeyError(name)
