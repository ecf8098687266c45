"""Run-time hyper-parameters: values that live in the optimizer state.

``inject_hyperparams(adam)(learning_rate=1e-3)`` builds an Adam whose
learning rate, betas and epsilon are arrays in the state. Changing one between
steps changes an array argument of the jitted step, not a constant baked into
it, so nothing recompiles; the values used by the last step are in the state
for logging.

Why the result is bit-identical to the plain optimizer: every adaptx transform
converts each numeric hyper-parameter once with ``hyperparam(x, dtype)`` and
derives everything else (``1 - b1``, bias corrections) with jnp operations in
that dtype. A Python float and the same value as an array therefore go through
the same arithmetic. (optax's ``inject_hyperparams(adam)`` drifts from
``adam`` because plain optax folds Python-float constants differently.)
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from adaptx._base import GradientTransformation, OptState, Params, call_update
from adaptx._combine import _check_transform
from adaptx._numerics import safe_increment, widest_compute_dtype
from adaptx._signature import check_state
from adaptx._validate import check_decay, check_fits_params, check_momentum, check_nonnegative


class InjectHyperparamsState(NamedTuple):
    """State of a transform built by ``inject_hyperparams``.

    Attributes:
      count: int32, updates so far; schedules are evaluated at it (0 on the
        first update).
      hyperparams: a dict from argument name to a scalar array: the values
        the last update used (before the first update: those it will use).
        Set numeric entries between steps with ``set_hyperparams``; scheduled
        entries are recomputed from their schedule at every step.
      hyperparams_states: always ``{}`` (adaptx has no stateful schedules);
        kept so the state has optax's layout (``InjectStatefulHyperparamsState``)
        and optax checkpoints restore into it.
      inner_state: the inner transform's state.
    """

    count: jax.Array
    hyperparams: dict[str, jax.Array]
    hyperparams_states: dict[str, Any]
    inner_state: OptState


# Names whose concrete values ``set_hyperparams`` validates (the argument
# names every adaptx optimizer uses for these quantities).
_CHECKS: dict[str, Callable[[str, Any], None]] = {
    "learning_rate": check_nonnegative,
    "b1": check_decay,
    "b2": check_decay,
    "eps": check_nonnegative,
    "eps_root": check_nonnegative,
    "weight_decay": check_nonnegative,
    "momentum": check_momentum,
}


def _is_dtype_like(value: Any) -> bool:
    """Whether ``value`` names a dtype (``jnp.float32`` and friends are callable)."""
    try:
        jnp.dtype(value)
    except Exception:
        return False
    return True


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or isinstance(value, np.bool_):
        return False
    if isinstance(value, (int, float, np.integer, np.floating)):
        return True
    if isinstance(value, (np.ndarray, jax.Array)):
        return jnp.issubdtype(value.dtype, jnp.number)
    return False


def _as_hyperparam(value: Any, dtype: Any) -> jax.Array:
    """A number as a new array: real floats and Python ints in ``dtype``, integer arrays kept.

    Always a copy, so donating the state never deletes an array the caller passed in.
    """
    if isinstance(value, (int, float, np.integer, np.floating)) or jnp.issubdtype(
        jnp.result_type(value), jnp.floating
    ):
        return jnp.array(value, dtype, copy=True)
    return jnp.array(value, copy=True)


def inject_hyperparams(
    inner_factory: Callable[..., GradientTransformation],
    static_args: str | Iterable[str] = (),
    hyperparam_dtype: Any = None,
) -> Callable[..., GradientTransformation]:
    """Makes an optimizer's numeric hyper-parameters run-time values in its state.

    ``inject_hyperparams(adaptx.adam)`` takes the same arguments as
    ``adaptx.adam`` and returns a transform whose state is an
    ``InjectHyperparamsState``: ``state.hyperparams["learning_rate"]`` (and
    ``b1``, ``b2``, ``eps``, ...) are float32 arrays. Change them between steps
    with ``set_hyperparams`` (or by assigning float32 arrays into the dict)
    without recompiling the jitted step; read them for logging with
    ``get_hyperparams``. (Assigning a bare Python float works too, but it is
    weakly typed, so ``jit`` traces the step once more.) With unchanged values
    the updates are bit-identical to ``adaptx.adam`` with the same arguments.

    Which arguments become run-time values:

    - numbers (Python ``float`` or ``int``, NumPy or JAX numeric scalars and
      arrays): stored as arrays; real floats and Python ints in the
      hyper-parameter dtype, integer arrays as they are;
    - schedules (callables): evaluated at ``count`` every step, and their
      current value stored in ``hyperparams`` for logging;
    - everything else stays static and is passed to the factory unchanged:
      booleans, ``None``, strings, dtypes, transforms, arguments named
      ``mask`` (a mask callable is not a schedule), and every argument named
      in ``static_args``.

    Name an integer argument that must stay a Python int (a period, a count
    of steps) in ``static_args``. The factory is called again, with arrays
    (traced under ``jit``), at every ``init`` and ``update``; it must accept
    arrays for the injected arguments, which every adaptx optimizer does.
    Concrete values are validated once, when the transform is built.

    Args:
      inner_factory: a function returning a ``GradientTransformation``, such
        as ``adaptx.adam`` (or an optax alias).
      static_args: names of arguments never to inject.
      hyperparam_dtype: dtype of the stored floating hyper-parameters;
        ``None`` for float32, or float64 when the params hold float64 leaves.

    Returns:
      A function with ``inner_factory``'s arguments returning a
      ``GradientTransformation`` with state ``InjectHyperparamsState``.

    Example:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.inject_hyperparams(adaptx.scale_by_learning_rate)(learning_rate=0.1)
      >>> params = jnp.zeros(2)
      >>> state = tx.init(params)
      >>> step = jax.jit(tx.update)
      >>> updates, state = step(jnp.ones(2), state)
      >>> state = adaptx.set_hyperparams(state, learning_rate=0.01)  # no recompilation
      >>> updates, state = step(jnp.ones(2), state)
      >>> updates, adaptx.get_hyperparams(state)["learning_rate"]
      (Array([-0.01, -0.01], dtype=float32), Array(0.01, dtype=float32))
    """
    if not callable(inner_factory):
        raise TypeError(f"inner_factory must be callable, got {inner_factory!r}")
    static = {static_args} if isinstance(static_args, str) else set(static_args)
    sig = inspect.signature(inner_factory)
    var_kw = next(
        (n for n, p in sig.parameters.items() if p.kind is inspect.Parameter.VAR_KEYWORD), None
    )
    if var_kw is None and not static <= set(sig.parameters):
        raise ValueError(
            f"static_args {sorted(static - set(sig.parameters))} are not arguments of "
            f"{getattr(inner_factory, '__name__', inner_factory)}; its arguments are "
            f"{list(sig.parameters)}"
        )

    def hp_dtype(tree: Any) -> Any:
        if hyperparam_dtype is not None:
            return jnp.dtype(hyperparam_dtype)
        return widest_compute_dtype(tree)

    @functools.wraps(inner_factory)
    def wrapped(*args: Any, **kwargs: Any) -> GradientTransformation:
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        # Named values the factory receives, with ``**kwargs`` entries flattened.
        values: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            kind = sig.parameters[name].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                values.update(value)
            elif kind is not inspect.Parameter.VAR_POSITIONAL:
                values[name] = value
        numeric, schedules = {}, {}
        for name, value in values.items():
            if name in static or name == "mask" or isinstance(value, (bool, np.bool_)):
                continue
            if _is_number(value):
                numeric[name] = value
            elif callable(value) and not _is_dtype_like(value) and not _is_transform(value):
                schedules[name] = value

        def build(hyperparams: dict[str, Any]) -> GradientTransformation:
            arguments = dict(bound.arguments)
            for name, value in hyperparams.items():
                if name in sig.parameters:
                    arguments[name] = value
                else:
                    arguments[var_kw] = {**arguments[var_kw], name: value}
            call = inspect.BoundArguments(sig, arguments)  # type: ignore[arg-type]
            return inner_factory(*call.args, **call.kwargs)

        def current(count: jax.Array, stored: dict[str, Any], dtype: Any) -> dict[str, Any]:
            hp = {k: _as_hyperparam(stored[k], dtype) for k in numeric}
            hp.update({k: jnp.asarray(s(count), dtype) for k, s in schedules.items()})
            return hp

        zero = lambda: jnp.zeros((), jnp.int32)  # a fresh buffer each time (donation)
        f32 = jax.ShapeDtypeStruct((), jnp.float32)
        for name, value in numeric.items():
            check_fits_params(name, value, f32, what="the hyper-parameters' (float32 arrays)")
        _check_transform(build(current(zero(), numeric, jnp.float32)), "inner_factory's result")

        def init_fn(params: Params) -> InjectHyperparamsState:
            hp = current(zero(), numeric, hp_dtype(params))
            return InjectHyperparamsState(zero(), hp, {}, build(hp).init(params))

        def update_fn(updates, state: InjectHyperparamsState, params=None, **extra_args):
            check_state("inject_hyperparams", state, InjectHyperparamsState)
            dtype = hp_dtype(updates if params is None else params)
            hp = current(state.count, state.hyperparams, dtype)
            new_updates, inner_state = call_update(
                build(hp), updates, state.inner_state, params, extra_args
            )
            return new_updates, InjectHyperparamsState(
                safe_increment(state.count), hp, state.hyperparams_states, inner_state
            )

        return GradientTransformation(init_fn, update_fn)

    return wrapped


def _is_transform(value: Any) -> bool:
    return hasattr(value, "init") and hasattr(value, "update")


def _is_injected(x: Any) -> bool:
    return isinstance(x, InjectHyperparamsState)


def _injected_states(state: OptState) -> list[InjectHyperparamsState]:
    return [s for s in jax.tree.leaves(state, is_leaf=_is_injected) if _is_injected(s)]


def get_hyperparams(state: OptState) -> dict[str, jax.Array]:
    """The run-time hyper-parameters in ``state``, for logging.

    Args:
      state: an optimizer state containing exactly one
        ``InjectHyperparamsState`` (at any depth: inside ``chain``,
        ``masked``, ``apply_if_finite``, ...). With several (parameter groups
        in ``partition``), pass the group's sub-state,
        ``state.inner_states[label]``.

    Returns:
      A new dict from name to scalar array: the values the last update used.

    Raises:
      ValueError: ``state`` holds no ``InjectHyperparamsState``, or several.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.chain(
      ...     adaptx.clip(1.0), adaptx.inject_hyperparams(adaptx.scale)(step_size=-0.5))
      >>> adaptx.get_hyperparams(tx.init(jnp.zeros(1)))
      {'step_size': Array(-0.5, dtype=float32)}
    """
    found = _injected_states(state)
    if len(found) != 1:
        raise ValueError(
            f"get_hyperparams needs a state with exactly one InjectHyperparamsState, found "
            f"{len(found)}; build the optimizer with inject_hyperparams, and with several "
            "(e.g. parameter groups) pass the sub-state of one group"
        )
    return dict(found[0].hyperparams)


def set_hyperparams(state: OptState, **values: Any) -> OptState:
    """Returns ``state`` with run-time hyper-parameters set to new values.

    Every ``InjectHyperparamsState`` in ``state`` (at any depth) that has an
    entry of that name gets the value, converted to the entry's dtype and
    shape, so the jitted step sees arrays of the same type and does not
    recompile. Works inside ``jit`` too. Concrete values of the standard
    names (``learning_rate``, ``b1``, ``b2``, ``eps``, ``eps_root``,
    ``weight_decay``, ``momentum``) are validated. Setting an entry that
    follows a schedule has no effect: the schedule overwrites it at the next
    step.

    Args:
      state: an optimizer state.
      **values: new values by hyper-parameter name (numbers or arrays).

    Returns:
      A new state; ``state`` itself is not modified.

    Raises:
      KeyError: no run-time hyper-parameter has one of the given names.
      ValueError: a value is out of its range, or has the wrong shape.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.inject_hyperparams(adaptx.scale_by_learning_rate)(learning_rate=0.1)
      >>> state = adaptx.set_hyperparams(tx.init(jnp.zeros(1)), learning_rate=0.5)
      >>> state.hyperparams["learning_rate"]
      Array(0.5, dtype=float32)
    """
    for name, value in values.items():
        if name in _CHECKS:
            _CHECKS[name](name, value)
    used: set[str] = set()

    def set_in(s: Any) -> Any:
        if not _is_injected(s):
            return s
        hp = dict(s.hyperparams)
        for name, value in values.items():
            if name not in hp:
                continue
            old = jnp.asarray(hp[name])
            if np.shape(value) != old.shape:
                raise ValueError(
                    f"{name} must have shape {old.shape}, got {np.shape(value)} ({value!r})"
                )
            hp[name] = jnp.asarray(value, old.dtype)
            used.add(name)
        return s._replace(hyperparams=hp)

    new_state = jax.tree.map(set_in, state, is_leaf=_is_injected)
    missing = set(values) - used
    if missing:
        available = sorted({k for s in _injected_states(state) for k in s.hyperparams})
        raise KeyError(
            f"no run-time hyper-parameter named {sorted(missing)} in this state; "
            f"available: {available} (build the optimizer with inject_hyperparams)"
        )
    return new_state
