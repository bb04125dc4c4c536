"""make_plan is pure: tested on synthetic shapes and reports, without any model."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from effir_surgery.analyze import ImportanceReport
from effir_surgery.arch import ModelShape
from effir_surgery.config import PlanSettings
from effir_surgery.costs import param_count
from effir_surgery.errors import EffirError
from effir_surgery.plan import SurgeryPlan, make_plan


def fake_shape(layers=12, width=256, hidden=64, dropped=()):
    widths = [0 if i in dropped else width for i in range(layers)]
    return ModelShape(
        model_type="llama",
        num_layers=layers,
        hidden_size=hidden,
        intermediate_size=width,
        mlp_widths=widths,
        dropped_attention=[],
        num_attention_heads=4,
        head_dim=hidden // 4,
        vocab_size=1000,
        attention_windows=[None] * layers,
        embedding_params=1000 * hidden,
        lm_head_params=0,
        final_norm_params=hidden,
        attention_params=4 * hidden * hidden,
        attention_linear_params=4 * hidden * hidden,
        attention_norm_params=hidden,
        mlp_params_per_neuron=3 * hidden,
        mlp_linear_params_per_neuron=3 * hidden,
        mlp_fixed_params=0,
        mlp_norm_params=hidden,
    )


def fake_report(shape, seed=0):
    import random

    rng = random.Random(seed)
    present = [i for i, w in enumerate(shape.mlp_widths) if w > 0]
    return ImportanceReport(
        model="fake",
        shape=shape,
        calibration="synthetic",
        max_length=16,
        texts=1,
        tokens=1,
        attention=[rng.uniform(0.01, 1) for _ in range(shape.num_layers)],
        mlp=[rng.uniform(0.01, 1) if i in present else 0.0 for i in range(shape.num_layers)],
        neurons={str(i): [rng.expovariate(1.0) for _ in range(shape.mlp_widths[i])] for i in present},
    )


def test_ratio_drops_the_lowest_scored_mlps():
    shape = fake_shape()
    report = fake_report(shape)
    plan = make_plan(shape, PlanSettings(mlp_drop=0.25), report)
    lowest = sorted(range(12), key=lambda i: report.mlp[i])[:3]
    assert plan.drop_mlp_layers == sorted(lowest)
    assert all(plan.mlp_widths[i] == 0 for i in lowest)
    assert plan.drop_attention_layers == []


def test_half_of_thirty_is_fifteen():
    shape = fake_shape(layers=30)
    assert len(make_plan(shape, PlanSettings(mlp_drop=0.5), fake_report(shape)).drop_mlp_layers) == 15


def test_explicit_layers_need_no_report():
    plan = make_plan(fake_shape(), PlanSettings(drop_mlp_layers=[3, 7, 11], drop_attention_layers=[5]))
    assert plan.drop_mlp_layers == [3, 7, 11] and plan.drop_attention_layers == [5]
    assert plan.scores is None


def test_ratio_removing_everything_is_refused_with_the_largest_allowed_value():
    shape = fake_shape(layers=30)
    with pytest.raises(EffirError, match=r"would remove all 30 MLP sublayers.*at most 0.98"):
        make_plan(shape, PlanSettings(mlp_drop=0.99), fake_report(shape))
    assert len(make_plan(shape, PlanSettings(mlp_drop=0.98), fake_report(shape)).drop_mlp_layers) == 29


def test_out_of_range_layer():
    with pytest.raises(EffirError, match="layer 12 is out of range; this model has 12 layers"):
        make_plan(fake_shape(), PlanSettings(drop_mlp_layers=[1, 12]))


def test_already_removed_layer():
    with pytest.raises(EffirError, match="already removed"):
        make_plan(fake_shape(dropped=(4,)), PlanSettings(drop_mlp_layers=[4]))


def test_width_needs_neuron_scores():
    shape = fake_shape()
    report = fake_report(shape).model_copy(update={"neurons": None})
    with pytest.raises(EffirError, match="per-neuron scores"):
        make_plan(shape, PlanSettings(mlp_width=0.5), report)


def test_uniform_width_keeps_top_neurons():
    shape = fake_shape()
    report = fake_report(shape)
    plan = make_plan(shape, PlanSettings(mlp_drop=0.25, mlp_width=0.5), report)
    for i, w in enumerate(plan.mlp_widths):
        if i in plan.drop_mlp_layers:
            assert w == 0 and str(i) not in plan.kept_neurons
            continue
        assert w == 128
        kept = plan.kept_neurons[str(i)]
        scores = report.neuron_scores(i)
        assert kept == sorted(kept) and len(kept) == 128
        assert min(scores[j] for j in kept) >= max(scores[j] for j in range(256) if j not in set(kept))


def test_impossible_budgets():
    shape = fake_shape()
    report = fake_report(shape)
    with pytest.raises(EffirError, match="below the smallest model"):
        make_plan(shape, PlanSettings(param_budget=1000), report)
    with pytest.raises(EffirError, match="above the model's size"):
        make_plan(shape, PlanSettings(param_budget=10**12), report)


def test_plan_json_round_trip():
    shape = fake_shape()
    plan = make_plan(shape, PlanSettings(mlp_drop=0.25, param_budget=300_000), fake_report(shape))
    again = SurgeryPlan.model_validate(json.loads(plan.model_dump_json()))
    assert again == plan


budget_cases = st.fixed_dictionaries(
    {
        "layers": st.integers(2, 16),
        # widths that are not multiples of the rounding multiple (100, 12, 250) are where budgets used to be missed
        "width": st.sampled_from([12, 16, 64, 96, 100, 250]),
        "predropped": st.sets(st.integers(0, 15), max_size=3),
        "drop": st.floats(0, 0.7),
        "multiple": st.sampled_from([1, 4, 8]),
        "seed": st.integers(0, 10_000),
    }
)


def _budget_setup(case):
    """A shape (possibly with MLPs already removed), its report, the depth-only plan, and the parameter counts of
    the smallest and largest models a budget can ask for after those depth cuts."""
    layers, width, multiple = case["layers"], case["width"], case["multiple"]
    predropped = {i for i in case["predropped"] if i < layers}
    if len(predropped) >= layers - 1:
        predropped = set()
    shape = fake_shape(layers=layers, width=width, dropped=tuple(predropped))
    report = fake_report(shape, case["seed"])
    depth = make_plan(shape, PlanSettings(mlp_drop=case["drop"]), report)
    low = param_count(shape, [min(multiple, w) for w in depth.mlp_widths]).total
    high = param_count(shape, depth.mlp_widths).total
    return shape, report, depth, low, high


@settings(max_examples=400, deadline=None)
@given(case=budget_cases, fraction=st.floats(0, 1))
def test_budget_properties(case, fraction):
    """For any feasible budget, from the smallest to the largest model: met within one rounding multiple of
    neurons, every width a multiple >= the multiple (or the layer's full width), removed MLPs at width 0, and the
    same plan again from a JSON copy of the report."""
    shape, report, depth, low, high = _budget_setup(case)
    multiple = case["multiple"]
    budget = int(low + fraction * (high - low))
    config = PlanSettings(mlp_drop=case["drop"], param_budget=budget, width_multiple=multiple)
    plan = make_plan(shape, config, report)
    got = param_count(shape, plan.mlp_widths).total
    assert abs(got - budget) < multiple * shape.mlp_params_per_neuron
    removed = {i for i, w in enumerate(shape.mlp_widths) if w == 0} | set(depth.drop_mlp_layers)
    assert set(plan.drop_mlp_layers) == set(depth.drop_mlp_layers)
    for i, w in enumerate(plan.mlp_widths):
        full = shape.mlp_widths[i]
        if i in removed:
            assert w == 0
        else:
            assert min(multiple, full) <= w <= full and (w % multiple == 0 or w == full)
    copy = ImportanceReport.model_validate(json.loads(report.model_dump_json()))
    assert make_plan(shape, config, copy) == plan


@settings(max_examples=150, deadline=None)
@given(case=budget_cases)
def test_impossible_budgets_are_refused_at_the_boundary(case):
    """One neuron's worth of parameters outside the reachable range is refused, and the message quotes the limit;
    the limits themselves are accepted and met within one multiple."""
    shape, report, _, low, high = _budget_setup(case)
    per_neuron, multiple = shape.mlp_params_per_neuron, case["multiple"]

    def plan(budget):
        return make_plan(
            shape, PlanSettings(mlp_drop=case["drop"], param_budget=budget, width_multiple=multiple), report
        )

    with pytest.raises(EffirError, match=f"below the smallest model this plan can make \\({low:,}"):
        plan(low - per_neuron)
    with pytest.raises(EffirError, match=f"above the model's size after the depth cuts \\({high:,}\\)"):
        plan(high + per_neuron)
    for limit in (low, high):
        assert abs(param_count(shape, plan(limit).mlp_widths).total - limit) < multiple * per_neuron


def test_budget_with_widths_off_the_grid():
    """A regression case found by a stress run: full width 100 with multiple 8 (the top step is 96 -> 100)."""
    shape = fake_shape(layers=11, width=100)
    report = fake_report(shape, 3)
    budget = 455_907
    plan = make_plan(shape, PlanSettings(param_budget=budget, width_multiple=8), report)
    assert abs(param_count(shape, plan.mlp_widths).total - budget) < 8 * shape.mlp_params_per_neuron
    assert set(plan.mlp_widths) <= {8 * k for k in range(1, 13)} | {100}


def test_impossible_budget_is_refused_from_the_shape_alone():
    """With uniform widths an impossible budget needs no scores: it fails before any model is loaded."""
    from effir_surgery.plan import validate_plan_config

    shape = fake_shape()
    with pytest.raises(EffirError, match="below the smallest model"):
        validate_plan_config(shape, PlanSettings(mlp_drop=0.25, param_budget=1000))
    with pytest.raises(EffirError, match="above the model's size"):
        validate_plan_config(shape, PlanSettings(drop_mlp_layers=[1, 2], param_budget=10**12))
    validate_plan_config(shape, PlanSettings(mlp_drop=0.25, param_budget=300_000))


def test_inconsistent_plans_are_rejected():
    plan = make_plan(fake_shape(), PlanSettings())
    with pytest.raises(ValueError, match="keeps 2 distinct neurons but its width is 3"):
        SurgeryPlan.model_validate(
            {**plan.model_dump(), "mlp_widths": [3] + [256] * 11, "kept_neurons": {"0": [0, 1]}}
        )
    with pytest.raises(ValueError, match="without kept_neurons"):
        SurgeryPlan.model_validate({**plan.model_dump(), "mlp_widths": [128] + [256] * 11})
