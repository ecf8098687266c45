"""adaptx: composable gradient transformations for JAX.

Optimizers are pure ``(init, update)`` pairs that follow optax's contract, so
adaptx and optax transforms chain together in either direction.
"""

from adaptx._accumulation import MultiSteps as MultiSteps
from adaptx._accumulation import MultiStepsState as MultiStepsState
from adaptx._adadelta import ScaleByAdaDeltaState as ScaleByAdaDeltaState
from adaptx._adadelta import adadelta as adadelta
from adaptx._adadelta import scale_by_adadelta as scale_by_adadelta
from adaptx._adafactor import FactoredState as FactoredState
from adaptx._adafactor import adafactor as adafactor
from adaptx._adafactor import relative_step_size as relative_step_size
from adaptx._adafactor import scale_by_factored_rms as scale_by_factored_rms
from adaptx._adafactor import scale_by_param_block_rms as scale_by_param_block_rms
from adaptx._adagrad import ScaleByRssState as ScaleByRssState
from adaptx._adagrad import adagrad as adagrad
from adaptx._adagrad import scale_by_rss as scale_by_rss
from adaptx._adam import ScaleByAdamState as ScaleByAdamState
from adaptx._adam import scale_by_adam as scale_by_adam
from adaptx._adam import scale_by_adamax as scale_by_adamax
from adaptx._adam_aliases import adam as adam
from adaptx._adam_aliases import adamax as adamax
from adaptx._adam_aliases import adamw as adamw
from adaptx._adam_aliases import amsgrad as amsgrad
from adaptx._adam_aliases import nadam as nadam
from adaptx._adam_aliases import radam as radam
from adaptx._adam_variants import ScaleByAmsgradState as ScaleByAmsgradState
from adaptx._adam_variants import ScaleByNadamState as ScaleByNadamState
from adaptx._adam_variants import scale_by_amsgrad as scale_by_amsgrad
from adaptx._adam_variants import scale_by_nadam as scale_by_nadam
from adaptx._base import EmptyState as EmptyState
from adaptx._base import GradientTransformation as GradientTransformation
from adaptx._base import OptState as OptState
from adaptx._base import Params as Params
from adaptx._base import ScalarOrSchedule as ScalarOrSchedule
from adaptx._base import Schedule as Schedule
from adaptx._base import Updates as Updates
from adaptx._base import identity as identity
from adaptx._base import set_to_zero as set_to_zero
from adaptx._base import stateless as stateless
from adaptx._checkpoint import CheckpointError as CheckpointError
from adaptx._checkpoint import load_state as load_state
from adaptx._checkpoint import save_state as save_state
from adaptx._clipping import adaptive_grad_clip as adaptive_grad_clip
from adaptx._clipping import clip as clip
from adaptx._clipping import clip_by_block_rms as clip_by_block_rms
from adaptx._clipping import clip_by_global_norm as clip_by_global_norm
from adaptx._combine import chain as chain
from adaptx._combine import named_chain as named_chain
from adaptx._finite import ApplyIfFiniteState as ApplyIfFiniteState
from adaptx._finite import ZeroNansState as ZeroNansState
from adaptx._finite import apply_if_finite as apply_if_finite
from adaptx._finite import zero_nans as zero_nans
from adaptx._flat import FlatBuffer as FlatBuffer
from adaptx._flat import FusedState as FusedState
from adaptx._flat import fused_state_to_tree as fused_state_to_tree
from adaptx._flat import tree_to_fused_state as tree_to_fused_state
from adaptx._fuse import unfused as unfused
from adaptx._hyperparams import InjectHyperparamsState as InjectHyperparamsState
from adaptx._hyperparams import get_hyperparams as get_hyperparams
from adaptx._hyperparams import inject_hyperparams as inject_hyperparams
from adaptx._hyperparams import set_hyperparams as set_hyperparams
from adaptx._lookahead import LookaheadState as LookaheadState
from adaptx._lookahead import lookahead as lookahead
from adaptx._masking import MaskedNode as MaskedNode
from adaptx._masking import MaskedState as MaskedState
from adaptx._masking import PartitionState as PartitionState
from adaptx._masking import freeze as freeze
from adaptx._masking import masked as masked
from adaptx._masking import partition as partition
from adaptx._noise import AddNoiseState as AddNoiseState
from adaptx._noise import add_noise as add_noise
from adaptx._normalize import centralize as centralize
from adaptx._normalize import normalize_by_update_norm as normalize_by_update_norm
from adaptx._numerics import bias_correction as bias_correction
from adaptx._numerics import global_norm as global_norm
from adaptx._numerics import safe_increment as safe_increment
from adaptx._numerics import tree_cast as tree_cast
from adaptx._numerics import tree_update_infinity_moment as tree_update_infinity_moment
from adaptx._numerics import tree_update_moment as tree_update_moment
from adaptx._numerics import tree_update_moment_per_elem_norm as tree_update_moment_per_elem_norm
from adaptx._numerics import tree_zeros_like as tree_zeros_like
from adaptx._plateau import ReduceLROnPlateauState as ReduceLROnPlateauState
from adaptx._plateau import reduce_on_plateau as reduce_on_plateau
from adaptx._radam import radam_rho as radam_rho
from adaptx._radam import scale_by_radam as scale_by_radam
from adaptx._rmsprop import ScaleByRmsState as ScaleByRmsState
from adaptx._rmsprop import ScaleByStddevState as ScaleByStddevState
from adaptx._rmsprop import rmsprop as rmsprop
from adaptx._rmsprop import scale_by_rms as scale_by_rms
from adaptx._rmsprop import scale_by_stddev as scale_by_stddev
from adaptx._scale import ScaleByScheduleState as ScaleByScheduleState
from adaptx._scale import scale as scale
from adaptx._scale import scale_by_learning_rate as scale_by_learning_rate
from adaptx._scale import scale_by_schedule as scale_by_schedule
from adaptx._schedules import constant_schedule as constant_schedule
from adaptx._schedules import cosine_decay_schedule as cosine_decay_schedule
from adaptx._schedules import exponential_decay as exponential_decay
from adaptx._schedules import inverse_sqrt_schedule as inverse_sqrt_schedule
from adaptx._schedules import join_schedules as join_schedules
from adaptx._schedules import linear_schedule as linear_schedule
from adaptx._schedules import piecewise_constant_schedule as piecewise_constant_schedule
from adaptx._schedules import polynomial_schedule as polynomial_schedule
from adaptx._schedules import warmup_constant_schedule as warmup_constant_schedule
from adaptx._schedules import warmup_cosine_decay_schedule as warmup_cosine_decay_schedule
from adaptx._schedules import (
    warmup_exponential_decay_schedule as warmup_exponential_decay_schedule,
)
from adaptx._schedules_cyclic import cosine_onecycle_schedule as cosine_onecycle_schedule
from adaptx._schedules_cyclic import linear_onecycle_schedule as linear_onecycle_schedule
from adaptx._schedules_cyclic import (
    piecewise_interpolate_schedule as piecewise_interpolate_schedule,
)
from adaptx._schedules_cyclic import sgdr_schedule as sgdr_schedule
from adaptx._sgd import EmaState as EmaState
from adaptx._sgd import TraceState as TraceState
from adaptx._sgd import ema as ema
from adaptx._sgd import sgd as sgd
from adaptx._sgd import trace as trace
from adaptx._signature import TreeMismatchError as TreeMismatchError
from adaptx._signature import TreeSignature as TreeSignature
from adaptx._updates import apply_updates as apply_updates
from adaptx._updates import incremental_update as incremental_update
from adaptx._weight_decay import add_decayed_weights as add_decayed_weights

__version__ = "0.1.0.dev0"
