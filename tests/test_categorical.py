"""Categorical model inputs (sector, region, legal form): encoding, slots, unseen labels, explanations."""

from __future__ import annotations

import numpy as np
import pytest

from sf_ml import modeling as M
from sf_ml.config import ConfigError, load_config
from sf_ml.explain import base_variable, explain
from sf_ml.panel import TARGET

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")

SECTORS = ("C", "F", "I")


def sector_frame(spark, n: int = 600):
    """Risk set by the sector alone: I fails, C and F do not; ``x`` is noise."""
    rows = [(SECTORS[i % 3], float(i % 5), int(SECTORS[i % 3] == "I")) for i in range(n)]
    return spark.createDataFrame(rows, f"naf_section string, x double, {TARGET} int")


@pytest.mark.parametrize("name, overrides", [
    ("xgboost", ["model.params.n_estimators=10", "model.params.max_depth=2", "model.params.num_workers=1",
                 "model.params.min_child_weight=1", "model.params.learning_rate=1.0"]),
    ("tree_based", ["model.params.numTrees=5", "model.params.maxDepth=3",
                    "model.params.featureSubsetStrategy=all"]),
])
def test_sector_is_learnt_and_an_unseen_or_null_sector_scores_as_none(spark, name, overrides):
    config = load_config(name, [*overrides, "features.variables=[x]", "features.time_aggregation={}",
                                "features.categorical=[naf_section]", "fill_default_values={}"])
    columns = M.input_columns(config)
    assert columns == ["x", "naf_section"]
    model = M.build_pipeline(config, columns, seed=1).fit(sector_frame(spark))
    if name == "xgboost":  # one slot of label indices, split as a category
        assert M.feature_slot_names(model) == ["x", "naf_section"]
        assert M.classifier_of(model).get_booster().feature_types == ["q", "c"]
    else:  # labels in alphabetical order, one slot each; the unknown slot is dropped
        assert M.feature_slot_names(model) == ["x", "naf_section=C", "naf_section=F", "naf_section=I"]
    probe = spark.createDataFrame([("C", 1.0), ("I", 1.0), ("Z", 1.0), (None, 1.0)], "naf_section string, x double")
    p = [row.p for row in model.transform(probe).select(M.positive_probability().alias("p")).collect()]
    assert p[1] > 0.8 > 0.2 > p[0]
    assert p[2] == pytest.approx(p[3])  # unseen label and null: the same "unknown" category

    explained = explain(model, probe.selectExpr("CAST(monotonically_increasing_id() AS STRING) AS siren", "*"),
                        config)
    assert "contrib.naf_section" in explained.columns and "contrib.naf_section=I" not in explained.columns
    # The sector carries the risk of the "I" row: its contribution is the largest there.
    contributions = explained[["contrib.x", "contrib.naf_section"]].to_numpy()
    assert np.argmax(contributions[1]) == 1 and contributions[1, 1] > 0
    if name == "xgboost":  # the category slot's TreeSHAP values add up to the log-odds like the others
        q = explained["probability"].to_numpy()
        np.testing.assert_allclose(explained["expected_value"] + contributions.sum(axis=1), np.log(q / (1 - q)),
                                   atol=1e-4)
    if name == "tree_based":  # one-hot slots are 2-category splits for Spark's trees: both readings agree
        from sf_ml.explain import saved_nodes, walked_nodes

        classifier = M.classifier_of(model)
        saved, walked = saved_nodes(classifier), walked_nodes(classifier)
        assert (saved["numCategories"] == 2).any()
        for column in ("featureIndex", "threshold", "numCategories", "leftChild"):
            np.testing.assert_array_equal(saved[column].to_numpy(), walked[column].to_numpy())


def test_category_slots_map_back_to_their_column_and_bad_columns_are_refused():
    config = load_config("xgboost", ["features.categorical=[naf_section, region]"])
    assert base_variable("naf_section=I", config) == "naf_section"
    assert base_variable("region=84", config) == "region"
    with pytest.raises(ConfigError, match="siren"):
        load_config("xgboost", ["features.categorical=[siren]"])
