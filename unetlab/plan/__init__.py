"""Planning a run for this dataset, this machine and this many minutes.

``unetlab plan DATASET --budget 20m`` (or ``plan_dataset`` from Python): a fingerprint of the
data (:mod:`~unetlab.plan.fingerprint`), step times measured on the machine
(:mod:`~unetlab.engine.probe`), and the pure rules that turn them into a run configuration with
one reason per choice (:mod:`~unetlab.plan.planner`).
"""

from unetlab.plan.api import parse_budget, plan_dataset, plan_to_yaml, write_plan
from unetlab.plan.fingerprint import Fingerprint, fingerprint_dataset
from unetlab.plan.planner import Plan, PlanOptions, make_plan

__all__ = [
    "Fingerprint",
    "Plan",
    "PlanOptions",
    "fingerprint_dataset",
    "make_plan",
    "parse_budget",
    "plan_dataset",
    "plan_to_yaml",
    "write_plan",
]
