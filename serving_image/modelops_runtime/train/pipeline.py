"""From a frame and a job config to an unfitted scikit-learn pipeline.

* :func:`resolve_estimator` imports a dotted class path after checking it against the module
  allowlist (nothing outside the allowlist is imported);
* :func:`make_estimator` checks hyperparameters against ``get_params()`` before training;
* :func:`select_features` picks numeric and categorical columns (from dtypes unless listed);
* :func:`prepare_frame` normalises dtypes so the fitted pipeline and its MLflow signature
  accept missing values at predict time;
* :func:`build_pipeline` returns ``Pipeline([("preprocess", ColumnTransformer), ("model", estimator)])``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, is_classifier, is_regressor
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modelops.api.modelversion import DataSpec
from modelops.contract import estimator_allowed

from .errors import InvalidInput

Task = Literal["classification", "regression"]


def resolve_estimator(path: str, allowed_prefixes: Sequence[str]) -> type[BaseEstimator]:
    """Import the estimator class ``package.module.Class``; raises :class:`InvalidInput`.

    Refused before any import: paths outside ``allowed_prefixes``. Refused after import: missing
    module or attribute and non-estimator classes (:func:`make_estimator` checks the task).
    """
    if not estimator_allowed(path, tuple(allowed_prefixes)):
        raise InvalidInput(f"estimator {path!r} is outside the allowed modules {list(allowed_prefixes)}")
    module_name, _, class_name = path.rpartition(".")
    if not module_name:
        raise InvalidInput(f"estimator {path!r} must be a dotted path like sklearn.ensemble.RandomForestClassifier")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidInput(f"unknown estimator {path!r}: module {module_name!r} not found") from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        raise InvalidInput(f"unknown estimator {path!r}: {module_name} has no {class_name!r}")
    if not (inspect.isclass(cls) and issubclass(cls, BaseEstimator)):
        raise InvalidInput(f"{path!r} is not a scikit-learn estimator class")
    return cls


def task_of(estimator: Any) -> Task:
    """``classification`` or ``regression`` from scikit-learn's estimator tags."""
    return "classification" if is_classifier(estimator) else "regression"


def make_estimator(cls: type[BaseEstimator], hyperparameters: dict[str, Any], random_state: int) -> BaseEstimator:
    """Instantiate ``cls`` with ``hyperparameters`` after checking every key against ``get_params()``.

    ``random_state`` is used when the estimator has that parameter and it is not set explicitly.
    Raises :class:`InvalidInput` naming unknown keys and listing the valid ones, or when the
    estimator is neither a classifier nor a regressor. (Value errors are found by scikit-learn's
    own validation at fit time and also reported as invalid input.)
    """
    try:
        valid = cls().get_params(deep=False)
    except TypeError as exc:  # estimators with required constructor arguments
        raise InvalidInput(f"{cls.__name__} cannot be built without arguments: {exc}") from exc
    unknown = sorted(set(hyperparameters) - set(valid))
    if unknown:
        raise InvalidInput(
            f"unknown hyperparameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
            f"for {cls.__name__}; valid: {', '.join(sorted(valid))}"
        )
    params = dict(hyperparameters)
    if "random_state" in valid and "random_state" not in params:
        params["random_state"] = random_state
    estimator = cls(**params)
    if not (is_classifier(estimator) or is_regressor(estimator)):
        raise InvalidInput(f"{cls.__module__}.{cls.__name__} is neither a classifier nor a regressor")
    return estimator


@dataclass
class Features:
    """The feature columns, in the order the pipeline (and the MLflow signature) takes them."""

    numeric: list[str]
    categorical: list[str]
    ignored: list[str] = field(default_factory=list)

    @property
    def all(self) -> list[str]:
        """Numeric then categorical columns."""
        return [*self.numeric, *self.categorical]


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _is_categorical(series: pd.Series) -> bool:
    return (
        pd.api.types.is_object_dtype(series)
        or pd.api.types.is_string_dtype(series)
        or isinstance(series.dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(series)
    )


def select_features(frame: pd.DataFrame, spec: DataSpec) -> Features:
    """Feature columns from ``spec`` lists, or from dtypes when both lists are unset.

    From dtypes: numbers are numeric; object, string, category and bool columns are categorical;
    other dtypes (datetimes, …) are ignored and reported in ``Features.ignored``. Raises
    :class:`InvalidInput` for a missing target or listed column, or when no feature is left.
    """
    if spec.target not in frame.columns:
        # Column names come from the file: count them, never quote them (the message reaches status).
        raise InvalidInput(f"target column {spec.target!r} not in dataset (it has {len(frame.columns)} columns)")
    if spec.numeric_features is None and spec.categorical_features is None:
        numeric, categorical, ignored = [], [], []
        for column in frame.columns:
            if column == spec.target:
                continue
            if _is_numeric(frame[column]):
                numeric.append(str(column))
            elif _is_categorical(frame[column]):
                categorical.append(str(column))
            else:
                ignored.append(str(column))
        features = Features(numeric, categorical, ignored)
    else:
        features = Features(list(spec.numeric_features or []), list(spec.categorical_features or []))
        missing = [c for c in features.all if c not in frame.columns]
        if missing:
            raise InvalidInput(f"feature column{'s' if len(missing) > 1 else ''} not in dataset: {', '.join(missing)}")
        if spec.target in features.all:
            raise InvalidInput(f"target column {spec.target!r} is also listed as a feature")
        not_numeric = [c for c in features.numeric if not _is_numeric(frame[c])]
        if not_numeric:
            raise InvalidInput(f"numeric feature columns are not numeric: {', '.join(not_numeric)}")
    if not features.all:
        raise InvalidInput("the dataset has no feature columns besides the target")
    return features


def prepare_frame(frame: pd.DataFrame, features: Features) -> pd.DataFrame:
    """The feature frame with normalised dtypes (a copy).

    Numeric columns become float64, so that a missing value at predict time (NaN) matches the
    inferred MLflow signature; categorical columns become object with ``NaN`` for missing values
    (``None`` would escape ``SimpleImputer``).
    """
    out = pd.DataFrame(index=frame.index)
    for column in features.numeric:
        out[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    for column in features.categorical:
        series = frame[column].astype(object)
        out[column] = series.where(series.notna(), np.nan)
    return out


def prepare_target(target: pd.Series, task: Task) -> pd.Series:
    """The label column ready for fitting (rows with a missing label must already be dropped).

    Classification: float labels that are all whole numbers become int64 (a CSV column with
    gaps is read as float). Regression: the label must be numeric (:class:`InvalidInput`).
    """
    if task == "regression":
        if not _is_numeric(target):
            raise InvalidInput(f"target {target.name!r} must be numeric for a regressor, got dtype {target.dtype}")
        return target.astype("float64")
    if pd.api.types.is_float_dtype(target) and bool(np.all(np.mod(target.to_numpy(), 1) == 0)):
        return target.astype("int64")
    if isinstance(target.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(target):
        return target.astype(object)
    return target


def build_pipeline(features: Features, estimator: BaseEstimator) -> Pipeline:
    """``Pipeline([("preprocess", ColumnTransformer(...)), ("model", estimator)])``.

    Numeric: median imputation then standard scaling; categorical: most-frequent imputation then
    one-hot encoding that ignores unseen categories. Columns not listed are dropped.
    """
    transformers: list[tuple[str, Any, list[str]]] = []
    if features.numeric:
        numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
        transformers.append(("numeric", numeric, features.numeric))
    if features.categorical:
        categorical = Pipeline(
            [
                ("impute", SimpleImputer(strategy="most_frequent")),
                ("onehot", OneHotEncoder(handle_unknown="ignore")),
            ]
        )
        transformers.append(("categorical", categorical, features.categorical))
    preprocess = ColumnTransformer(transformers, remainder="drop")
    return Pipeline([("preprocess", preprocess), ("model", estimator)])


@dataclass(frozen=True)
class Split:
    """A reproducible train/test split of a dataset (features prepared, target encoded)."""

    features: Features
    x_train: pd.DataFrame
    x_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series
    dropped: int  # rows dropped because the target was missing


def split_dataset(frame: pd.DataFrame, data: DataSpec, task: Task, test_size: float, random_state: int) -> Split:
    """Select features, drop rows without a target, and split (stratified for classification).

    The training Job and anyone who needs the held-out rows (the demo, benchmarks) call this,
    so the same ``random_state`` always gives the same rows. Raises :class:`InvalidInput` for a
    target without values, a single class, a class with one row, or an impossible split.
    """
    from sklearn.model_selection import train_test_split

    features = select_features(frame, data)
    target_name = data.target
    missing_target = frame[target_name].isna()
    dropped = int(missing_target.sum())
    usable = frame.loc[~missing_target]
    if usable.empty:
        raise InvalidInput(f"target column {target_name!r} has no values")
    y = prepare_target(usable[target_name], task)
    x = prepare_frame(usable, features)
    stratify = None
    if task == "classification":
        counts = y.value_counts()
        # Class labels are dataset content: messages give counts only.
        if len(counts) < 2:
            raise InvalidInput(f"target column {target_name!r} has a single class; a classifier needs at least two")
        rare = counts[counts < 2]
        if len(rare):
            raise InvalidInput(
                f"{len(rare)} class(es) of {target_name!r} have only 1 row; "
                "a stratified split needs at least 2 per class"
            )
        stratify = y
    try:
        x_train, x_test, y_train, y_test = train_test_split(
            x, y, test_size=test_size, random_state=random_state, stratify=stratify
        )
    except ValueError as exc:  # scikit-learn's message states sizes, not data
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidInput(f"cannot split {len(x)} rows with test_size={test_size}: {first}") from exc
    return Split(features, x_train, x_test, y_train, y_test, dropped)
