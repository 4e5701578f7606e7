"""ServedModel without MLflow: the fast paths chosen at warm-up give the estimator's own answers."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modelops_runtime.serve.errors import RejectedByModel
from modelops_runtime.serve.metrics import ServerMetrics
from modelops_runtime.serve.model import IncompatibleModel, ServedModel, example_batch
from modelops_runtime.serve.schema import ColumnSpec, InputSchema

pytestmark = pytest.mark.filterwarnings("ignore:X does not have valid feature names")


def _schema(X: pd.DataFrame) -> InputSchema:
    return InputSchema([ColumnSpec(str(c), "double") for c in X.columns])


def _served(estimator: object, X: pd.DataFrame) -> tuple[ServedModel, object]:
    schema = _schema(X)
    model = ServedModel(estimator, schema)
    batch, trusted = example_batch(schema, X.head(5))
    assert trusted
    model.warm_up(batch, trusted_example=True)
    rows = schema.from_rows(X.iloc[:40].to_numpy().tolist(), list(X.columns))
    return model, rows


@pytest.fixture(scope="module")
def iris() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_iris(return_X_y=True, as_frame=True)
    return X, y


def test_forest_uses_one_predict_proba_and_an_ndarray(iris: tuple[pd.DataFrame, pd.Series]) -> None:
    X, y = iris
    forest = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)
    model, rows = _served(forest, X)
    assert model.proba_decides and model.accepts_matrix
    out = model.predict(rows)
    assert out.predict.tolist() == forest.predict(X.iloc[:40]).tolist()
    assert out.proba is not None
    np.testing.assert_allclose(out.proba, forest.predict_proba(X.iloc[:40]))


def test_other_classifiers_call_predict(iris: tuple[pd.DataFrame, pd.Series]) -> None:
    X, y = iris
    knn = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=4)).fit(X, y)
    model, rows = _served(knn, X)
    assert model.has_proba and not model.proba_decides
    out = model.predict(rows, want_proba=False)
    assert out.proba is None
    assert out.predict.tolist() == knn.predict(X.iloc[:40]).tolist()
    assert model.predict(rows, want_proba=True).proba is not None


def test_name_selecting_pipeline_keeps_dataframes(iris: tuple[pd.DataFrame, pd.Series]) -> None:
    X, y = iris
    by_name = ColumnTransformer([("scale", StandardScaler(), list(X.columns[:2]))], remainder="passthrough")
    pipe = make_pipeline(by_name, LogisticRegression(max_iter=500)).fit(X, y)
    model, rows = _served(pipe, X)
    assert not model.accepts_matrix  # string column selection needs a DataFrame
    assert model.predict(rows).predict.tolist() == pipe.predict(X.iloc[:40]).tolist()


def test_regressor_has_only_predict_and_unlabelled_counts() -> None:
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    ridge = Ridge().fit(X, y)
    model, rows = _served(ridge, X)
    assert model.outputs == ["predict"] and model.classes is None
    out = model.predict(rows)
    np.testing.assert_allclose(out.predict, ridge.predict(X.iloc[:40]))
    metrics = ServerMetrics("diabetes", "1.0.0")
    metrics.observe(out.predict, 0.001, classifier=False)
    assert 'ml_predictions_total{model_name="diabetes",model_version="1.0.0",prediction_class=""} 40.0' in (
        metrics.render().decode()
    )


def test_model_rejection_is_a_client_error(iris: tuple[pd.DataFrame, pd.Series]) -> None:
    X, y = iris
    model, _ = _served(LogisticRegression(max_iter=500).fit(X, y), X)
    with_nan = model.schema.from_columns({c: [None] for c in X.columns})
    with pytest.raises(RejectedByModel, match="NaN"):
        model.predict(with_nan)


def test_failing_on_its_own_example_refuses_the_model(iris: tuple[pd.DataFrame, pd.Series]) -> None:
    X, y = iris
    schema = _schema(X)
    model = ServedModel(LogisticRegression(max_iter=500).fit(X, y), schema)
    broken = X.head(2).copy()
    broken.iloc[0, 0] = np.nan
    batch, trusted = example_batch(schema, broken)
    with pytest.raises(IncompatibleModel, match="input example"):
        model.warm_up(batch, trusted_example=trusted)
    synthetic, trusted = example_batch(schema, None)
    assert not trusted and synthetic.n_rows == 1


def test_a_skops_file_naming_a_helper_function_is_refused_at_load_not_at_warm_up(tmp_path: Path) -> None:
    from modelops_runtime.serve.model import load_served_model
    from tests.unit.test_registry_config import save_with_callable

    helper = "sklearn.utils._testing.assert_run_python_script_without_output"
    path = save_with_callable(tmp_path, helper)
    refused = rf"outside the trusted set: {re.escape(helper)} \(a test helper"
    with pytest.raises(IncompatibleModel, match=refused) as err:
        load_served_model(str(path), dst_path=str(tmp_path / "download"))
    assert "warm-up" not in str(err.value)
