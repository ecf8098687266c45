"""The papers' results, reproduced: the building blocks of ``python -m adaptx demo``.

The main job trains L2-regularised multinomial logistic regression on
scikit-learn's bundled digits with Adam, AdaGrad and SGD with Nesterov momentum
(the Adam paper's Figure 1) and six more optimizers, and measures each against
the float64 optimum found by L-BFGS.

Needs the ``demo`` extra (scikit-learn, SciPy, matplotlib):
``pip install "adaptx[demo]"``. ``import adaptx`` itself never imports them.
"""

from adaptx.demo._problem import Optimum as Optimum
from adaptx.demo._problem import Problem as Problem
from adaptx.demo._problem import data_loss as data_loss
from adaptx.demo._problem import l2_penalty as l2_penalty
from adaptx.demo._problem import lbfgs_optimum as lbfgs_optimum
from adaptx.demo._problem import load_digits_problem as load_digits_problem
from adaptx.demo._problem import objective as objective
from adaptx.demo._problem import objective_f64 as objective_f64
from adaptx.demo._report import Progress as Progress
from adaptx.demo._report import format_table as format_table
from adaptx.demo._report import plot_figure1 as plot_figure1
from adaptx.demo._train import DEFAULT_LEARNING_RATES as DEFAULT_LEARNING_RATES
from adaptx.demo._train import OPTIMIZERS as OPTIMIZERS
from adaptx.demo._train import Figure1 as Figure1
from adaptx.demo._train import OptimizerSpec as OptimizerSpec
from adaptx.demo._train import TrainResult as TrainResult
from adaptx.demo._train import run_figure1 as run_figure1
from adaptx.demo._train import train as train
