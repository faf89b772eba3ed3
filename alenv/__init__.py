"""alenv: Gymnasium environments for active learning of machine-learned interatomic potentials.

``import alenv`` registers every task as ``alenv/<Task>-v<N>`` (and ``alenv/<Task>-tiny-v<N>``).
"""

from alenv.threads import limit_openmp

limit_openmp()  # before anything loads xTB's or torch's OpenMP runtime (see alenv.threads)

from alenv.tasks import TASKS, get_task, register_all  # noqa: E402

__version__ = "0.1.0"

register_all()

__all__ = ["TASKS", "get_task", "register_all", "__version__"]
