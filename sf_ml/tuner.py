"""A small search interface over hyperparameters, with hyperopt's TPE behind it.

hyperopt is unmaintained upstream: the rest of the project only sees :class:`Tuner` and the
search-space format of the experiment configs, so another library can replace it here alone.

Search-space format (``search_space`` of an experiment config)::

    regParam: {type: loguniform, low: 0.001, high: 1.0}
    maxDepth: {type: quniform, low: 4, high: 12, q: 1}     # integers when low, high, q are
    featureSubsetStrategy: {type: choice, options: [sqrt, log2]}

hyperopt is imported inside :class:`HyperoptTuner` only: it is optional and kept behind this module.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np
from tqdm import tqdm

from sf_ml.config import ConfigError


@dataclass(frozen=True)
class Trial:
    """One evaluated point of the search.

    Args:
        number: Order of the trial (0-based).
        params: The hyperparameters tried.
        loss: The objective's value (lower is better).
    """

    number: int
    params: dict[str, Any]
    loss: float


class Tuner(Protocol):
    """Minimises an objective over a search space."""

    def minimize(
        self,
        objective: Callable[[int, dict[str, Any]], float],
        space: dict[str, dict[str, Any]],
        max_evals: int,
        parallelism: int = 1,
        seed: int = 0,
        progress: bool = True,
    ) -> list[Trial]:
        """Evaluate ``objective(trial_number, params)`` ``max_evals`` times; return the trials."""


def _is_integer_space(spec: dict[str, Any]) -> bool:
    return all(float(spec.get(k, 1)).is_integer() for k in ("low", "high", "q"))


class HyperoptTuner:
    """Tree-structured Parzen estimator search with hyperopt, ``parallelism`` trials at a time.

    hyperopt's own ``fmin`` evaluates one trial at a time (``SparkTrials`` would run the objective
    on executors, where a Spark ML fit cannot run). Here each round asks TPE for ``parallelism``
    points given all finished trials, evaluates them in driver threads (each submits its own Spark
    jobs), and tells the results back.
    """

    def _space(self, space: dict[str, dict[str, Any]]):
        from hyperopt import hp

        expressions = {}
        for name, spec in space.items():
            kind = spec.get("type")
            try:
                if kind == "uniform":
                    expressions[name] = hp.uniform(name, spec["low"], spec["high"])
                elif kind == "loguniform":
                    expressions[name] = hp.loguniform(name, math.log(spec["low"]), math.log(spec["high"]))
                elif kind == "quniform":
                    expressions[name] = hp.quniform(name, spec["low"], spec["high"], spec.get("q", 1))
                elif kind == "choice":
                    expressions[name] = hp.choice(name, list(spec["options"]))
                else:
                    raise ConfigError(f"search_space.{name}: unknown type {kind!r}")
            except KeyError as missing:
                raise ConfigError(f"search_space.{name}: {kind} needs {missing}") from None
        return expressions

    @staticmethod
    def _typed(space: dict[str, dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
        return {
            name: int(round(value))
            if space[name].get("type") == "quniform" and _is_integer_space(space[name])
            else value
            for name, value in params.items()
        }

    def minimize(self, objective, space, max_evals, parallelism=1, seed=0, progress=True) -> list[Trial]:
        """See :meth:`Tuner.minimize`."""
        from hyperopt import STATUS_OK, Domain, Trials, space_eval, tpe
        from hyperopt.base import JOB_STATE_DONE

        if not space:
            raise ConfigError("search_space is empty: nothing to tune")
        if max_evals < 1 or parallelism < 1:
            raise ValueError("max_evals and parallelism must be at least 1")
        expressions = self._space(space)
        domain = Domain(lambda params: 0.0, expressions)
        history = Trials()
        rng = np.random.default_rng(seed)
        results: list[Trial] = []
        bar = tqdm(total=max_evals, desc="tune", unit="trial", disable=not progress)
        with ThreadPoolExecutor(max_workers=parallelism) as pool:
            while len(results) < max_evals:
                ids = history.new_trial_ids(min(parallelism, max_evals - len(results)))
                history.refresh()
                docs = tpe.suggest(ids, domain, history, int(rng.integers(2**31 - 1)))
                points = [
                    self._typed(space, space_eval(expressions, {k: v[0] for k, v in d["misc"]["vals"].items() if v}))
                    for d in docs
                ]
                numbers = range(len(results), len(results) + len(points))
                losses = list(pool.map(objective, numbers, points))
                for doc, number, params, loss in zip(docs, numbers, points, losses):
                    doc["state"] = JOB_STATE_DONE
                    doc["result"] = {"loss": float(loss), "status": STATUS_OK}
                    results.append(Trial(number, params, float(loss)))
                history.insert_trial_docs(docs)
                history.refresh()
                bar.update(len(points))
                bar.set_postfix(best_loss=min(t.loss for t in results))
        bar.close()
        return results
