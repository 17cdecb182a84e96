"""The machinery behind ``noisesched.sampling``, one job per module:

* ``problem``: the ODE (``Problem``) and a piece of it as diffrax sees it (``Piece``);
* ``options``: the checked settings of one solve (``Options``);
* ``solvers``: the solver registry and what a name or an instance stands for;
* ``grid``: the uniform grid, its kinks and the one-sided evaluation times (``Step``);
* ``stepping``: one Euler or Heun step, the kernel of every Euler/Heun loop;
* ``fused``: the ``lax.scan`` loop and ``FusedEuler``;
* ``diffrax_path``: fixed-grid and adaptive solves with diffrax;
* ``integrate``: one solve, with its terminal step;
* ``diagnostics``: the errors of a failed solve.
"""

from .diagnostics import MaxStepsReached as MaxStepsReached
from .diagnostics import all_finite as all_finite
from .diagnostics import first_nonfinite as first_nonfinite
from .diagnostics import max_steps_error as max_steps_error
from .diagnostics import nonfinite_error as nonfinite_error
from .fused import FusedEuler as FusedEuler
from .grid import Grid as Grid
from .grid import Step as Step
from .integrate import integrate as integrate
from .options import Observe as Observe
from .options import Options as Options
from .problem import Problem as Problem
from .solution import Solution as Solution
from .solvers import ADAPTIVE_SOLVERS as ADAPTIVE_SOLVERS
from .solvers import SCAN_SOLVERS as SCAN_SOLVERS
from .solvers import SOLVERS as SOLVERS
from .stepping import STEP_METHODS as STEP_METHODS
