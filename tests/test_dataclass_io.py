"""Config dataclasses against what a checkpoint saved of them."""

from dataclasses import asdict, replace

from csgaussian.dataclass_io import matches_saved
from csgaussian.train.config import SemanticTrainConfig, TrainConfig


def test_a_checkpoint_from_before_a_new_field_still_matches_both_stages_configs():
    for config in (TrainConfig(), SemanticTrainConfig()):
        saved = asdict(config)
        assert matches_saved(config, saved)
        del saved["raster"]  # written before RasterConfig existed in the config
        assert matches_saved(config, saved)


def test_other_settings_or_a_foreign_record_do_not_match():
    config = SemanticTrainConfig()
    assert not matches_saved(config, asdict(replace(config, seed=config.seed + 1)))
    assert not matches_saved(config, {**asdict(config), "renamed_field": 1})
    assert not matches_saved(config, None)
    assert not matches_saved(config, ["not", "a", "dict"])
