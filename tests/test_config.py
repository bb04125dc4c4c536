"""Config validation: bad values fail with a message that says what to change; unknown keys are errors."""

import pytest

from effir_surgery.config import PlanSettings, PruneConfig
from effir_surgery.errors import EffirError
from effir_surgery.validation import parse_count, validated


@pytest.mark.parametrize(
    "values, message",
    [
        ({"mlp_drop": 1.0}, "--mlp-drop: must be in [0, 1): it is the fraction of MLP sublayers to remove; got 1.0"),
        ({"mlp_drop": -0.1}, "--mlp-drop: must be in [0, 1)"),
        ({"attn_drop": 1.5}, "--attn-drop: must be in [0, 1)"),
        ({"mlp_width": 0.0}, "--mlp-width: must be in (0, 1]"),
        ({"mlp_width": 1.2}, "--mlp-width: must be in (0, 1]"),
        ({"param_budget": "ten"}, "is not a parameter count"),
        ({"param_budget": 0}, "must be a positive parameter count"),
        ({"drop_mlp_layers": "3,x"}, "comma-separated layer indices"),
        ({"drop_mlp_layers": [1, 1]}, "must not repeat"),
        ({"mlp_drop": 0.5, "drop_mlp_layers": [1]}, "give either --mlp-drop or --drop-mlp-layers, not both"),
        ({"mlp_width": 0.5, "param_budget": 10}, "give either --mlp-width or --param-budget, not both"),
        ({"mlp_dorp": 0.5}, "--mlp-dorp: unknown setting"),
        ({"width_multiple": 0}, "--width-multiple"),
        ({"width_method": "learned"}, "--width-method: unknown setting"),  # learned widths: finetune --learn-width
    ],
)
def test_plan_config_errors(values, message):
    with pytest.raises(EffirError) as err:
        validated(PlanSettings, **values)
    assert message in str(err.value)


def test_output_required_unless_dry_run():
    with pytest.raises(EffirError, match="output folder is required"):
        validated(PruneConfig, model="m")
    assert validated(PruneConfig, model="m", dry_run=True).output is None


def test_layer_list_from_string():
    assert PlanSettings(drop_mlp_layers="3, 7,11").drop_mlp_layers == [3, 7, 11]


@pytest.mark.parametrize(
    "text, value", [("90M", 90_000_000), ("1.5B", 1_500_000_000), ("500k", 500_000), ("123", 123), (77, 77)]
)
def test_parse_count(text, value):
    assert parse_count(text) == value


def test_needs_scores():
    assert PlanSettings(mlp_drop=0.5).needs_scores
    assert PlanSettings(mlp_width=0.5).needs_scores
    assert not PlanSettings(drop_mlp_layers=[1]).needs_scores


def test_prune_settings_stored_with_width_method_still_give_a_valid_recipe():
    """Folders pruned before ``width_method`` was removed store it in ``provenance.json``'s config; the model card
    still reads them, and the recipe it rebuilds leaves the setting out and validates."""
    from effir_surgery.card_history import _recipe
    from effir_surgery.config import PruneSettings, RunConfig

    stored = PruneConfig(model="m", output="o", mlp_drop=0.25).model_dump(mode="json")
    stored["width_method"] = "activation"
    recipe = _recipe([{"command": "effir-surgery run r.yaml", "config": stored}], None, "r")
    assert "width_method" not in recipe["prune"]
    assert RunConfig(**recipe).prune == PruneSettings(mlp_drop=0.25)
