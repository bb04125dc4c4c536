"""Learned width: gates start as the identity, fold-and-slice is exact, and the penalty behaves as documented."""

import pytest
import torch

from effir_surgery.arch import resolve_spec, shape_from_config
from effir_surgery.ops.gate_mlp import (
    GatedMLP,
    accumulate_scores,
    close_to_budget,
    fold_gates,
    insert_gates,
    open_fraction,
    scheduled_open_count,
    shrink_gates,
)
from effir_surgery.plan import plan_from_gates
from effir_surgery.surgery import apply_plan


def _logits(model, batch):
    with torch.inference_mode():
        return model(**batch, use_cache=False).logits


def test_gates_at_one_are_the_identity(tiny_model, input_batch):
    before = _logits(tiny_model, input_batch)
    gates = insert_gates(tiny_model, resolve_spec(tiny_model.config))
    assert len(gates) == 4 and all(isinstance(g, GatedMLP) for g in gates)
    names = {n for n, _ in tiny_model.named_parameters()}
    assert any(n.endswith("mlp.gate_proj.weight") for n in names)
    assert any(n.endswith("mlp.neuron_gate") for n in names)
    torch.testing.assert_close(_logits(tiny_model, input_batch), before, atol=1e-6, rtol=0)


@pytest.mark.parametrize("multiple", [1, 8])
def test_fold_and_slice_is_exact(tiny_model, input_batch, multiple):
    """Gates with values spread over (0, 2] and some exactly zero (one layer fully closed) give the same outputs as
    the folded, sliced model without gates."""
    spec = resolve_spec(tiny_model.config)
    shape = shape_from_config(tiny_model.config)
    gates = insert_gates(tiny_model, spec)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for k, gate in enumerate(gates):
            gate.neuron_gate.copy_(torch.rand(gate.neuron_gate.shape, generator=generator) * 2)
            closed = torch.rand(gate.neuron_gate.shape, generator=generator) < 0.6
            gate.neuron_gate[closed] = -0.5 if k % 2 else 0.0  # both ways a gate can be shut
        gates[2].neuron_gate.fill_(-1.0)
    gated_out = _logits(tiny_model, input_batch)

    kept = fold_gates(tiny_model, spec)
    assert not any(isinstance(m, GatedMLP) for m in tiny_model.modules())
    assert kept[2] == []
    plan = plan_from_gates(shape, kept, multiple=multiple, model_name="tiny")
    apply_plan(tiny_model, plan)
    widths = tiny_model.config.mlp_intermediate_sizes
    has_bias = getattr(tiny_model.config, "mlp_bias", False)
    assert widths[2] == (min(multiple, 64) if has_bias else 0)  # a closed MLP still adds down_proj's bias
    for i in (0, 1, 3):
        assert widths[i] >= len(kept[i]) and (widths[i] % multiple == 0 or widths[i] == 64)
    torch.testing.assert_close(_logits(tiny_model, input_batch), gated_out, atol=1e-5, rtol=0)


def test_shrink_is_the_l1_proximal_step(tiny_model):
    """Open gates move toward zero by the step and stop there; closed gates do not move."""
    gates = insert_gates(tiny_model, resolve_spec(tiny_model.config))
    with torch.no_grad():
        gates[0].neuron_gate[:3] = torch.tensor([0.25, 0.05, -0.3])
    before = gates[0].neuron_gate.clone()
    shrink_gates(gates, 0.1)
    z = gates[0].neuron_gate
    assert torch.allclose(z[:3], torch.tensor([0.15, 0.0, -0.3]))
    assert torch.allclose(z[3:], before[3:] - 0.1)
    assert open_fraction(gates) < 1.0


def test_schedule_is_monotone_and_meets_the_target():
    counts = [scheduled_open_count(1000, 300, step, start=10, end=70) for step in range(0, 101)]
    assert counts[:11] == [1000] * 11 and counts[70:] == [300] * 31
    assert all(a >= b for a, b in zip(counts, counts[1:], strict=False))
    assert counts[40] < 1000 - (1000 - 300) / 2  # cubic: most neurons close in the first half of the window


def test_close_to_budget_keeps_exactly_the_largest(tiny_model):
    gates = insert_gates(tiny_model, resolve_spec(tiny_model.config))
    with torch.no_grad():
        for k, g in enumerate(gates):
            g.neuron_gate.copy_(torch.linspace(-1, 1, g.neuron_gate.numel()) + k * 0.01)
        gates[0].neuron_gate[:5] = 0.5  # ties across the threshold
    close_to_budget(gates, 40)
    values = torch.cat([g.neuron_gate for g in gates])
    assert int((values > 0).sum()) == 40


@pytest.mark.parametrize("strength", [0.5, 2.0])
def test_the_trainers_gate_schedule_is_the_documented_one(strength):
    """docs/method.md, section 4, as the trainer's callback does it (driven here without an optimizer, so no gate is
    defended): nothing before 10% of the steps; in the window up to 70%, the L1 proximal step moves every open gate
    by strength / window per step (strength in total) but never below the floor 0.001, and gates close only by the
    schedule, smallest first, so the open count follows ``scheduled_open_count`` and is exactly the target at 70%;
    after that nothing changes."""
    from types import SimpleNamespace

    from conftest import build_tiny

    from effir_surgery.finetune.width import OPEN_FLOOR, SCHEDULE_END, SCHEDULE_START, _gate_schedule

    assert (SCHEDULE_START, SCHEDULE_END, OPEN_FLOOR) == (0.1, 0.7, 1e-3)
    model = build_tiny("llama")
    gates = insert_gates(model, resolve_spec(model.config))
    total, target = 4 * 64, 100
    with torch.no_grad():
        for k, g in enumerate(gates):  # distinct values, so "smallest first" is well defined
            g.neuron_gate.add_(torch.linspace(0, 0.01, 64) + k * 0.02)
    initial = torch.cat([g.neuron_gate.detach().clone() for g in gates])
    callback = _gate_schedule(gates, target, strength)
    for step in range(1, 101):
        callback.on_step_end(None, SimpleNamespace(max_steps=100, global_step=step), None)
        values = torch.cat([g.neuron_gate.detach() for g in gates])
        assert int((values > 0).sum()) == scheduled_open_count(total, target, step, start=10, end=70), step
        if step <= 10:
            assert torch.equal(values, initial)
        if step == 70:
            at_end = values.clone()
    values = torch.cat([g.neuron_gate.detach() for g in gates])
    assert torch.equal(values, at_end)  # the last 30% leave the gates alone
    kept = values > 0
    if strength < 1:  # the uniform shift keeps the order: the largest gates stay open (at the floor, ties do not)
        assert torch.equal(kept, initial >= initial.topk(target).values.min())
    expected = (initial[kept] - strength).clamp_min(OPEN_FLOOR)
    torch.testing.assert_close(values[kept], expected, atol=1e-5, rtol=0)
    assert torch.all(values[~kept] == 0)


def test_taylor_scores_are_the_squared_first_order_loss_change(tiny_model, input_batch):
    """``accumulate_scores`` adds ``(z * dL/dz)^2`` per step, and closing by score keeps the gates whose removal
    would change the loss most, whatever their values."""
    gates = insert_gates(tiny_model, resolve_spec(tiny_model.config))
    with torch.no_grad():
        for g in gates:
            g.neuron_gate.copy_(torch.linspace(0.5, 1.5, g.neuron_gate.numel()))
    expected = [torch.zeros_like(g.neuron_gate) for g in gates]
    for _ in range(2):  # two steps: the scores add up
        tiny_model.zero_grad()
        tiny_model(**input_batch, use_cache=False).logits.square().mean().backward()
        for e, g in zip(expected, gates, strict=True):
            e += (g.neuron_gate.detach() * g.neuron_gate.grad).square()
        accumulate_scores(gates)
    for e, g in zip(expected, gates, strict=True):
        torch.testing.assert_close(g.neuron_score, e)
    scores = torch.cat([g.neuron_score for g in gates])
    before = torch.cat([g.neuron_gate.detach() for g in gates])
    close_to_budget(gates, 40, by="taylor")
    values = torch.cat([g.neuron_gate.detach() for g in gates])
    assert int((values > 0).sum()) == 40
    assert torch.equal(values > 0, scores >= scores.topk(40).values.min())
    # the value ranking would have kept other gates (the largest values sit at the end of every layer)
    assert not torch.equal(values > 0, before >= before.topk(40).values.min())
    with pytest.raises(ValueError, match="'value' or 'taylor'"):
        close_to_budget(gates, 10, by="size")


def test_the_trainers_taylor_schedule_keeps_the_highest_scores():
    """With ``gate_score="taylor"`` the callback accumulates scores before each optimizer step and the schedule
    closes the lowest-scored gates: here gates whose neurons never get a gradient close first, whatever their
    values."""
    from types import SimpleNamespace

    from conftest import build_tiny

    from effir_surgery.finetune.width import _gate_schedule

    model = build_tiny("llama")
    gates = insert_gates(model, resolve_spec(model.config))
    target = 100
    with torch.no_grad():
        for g in gates:  # values favour the first half of each layer, gradients only reach the second half
            g.neuron_gate.copy_(torch.linspace(1.5, 0.5, 64))
    callback = _gate_schedule(gates, target, 0.0, by="taylor")
    for step in range(1, 101):
        for g in gates:
            g.neuron_gate.grad = torch.cat([torch.zeros(32), torch.full((32,), 0.1)])
        state = SimpleNamespace(max_steps=100, global_step=step)
        callback.on_pre_optimizer_step(None, state, None)
        callback.on_step_end(None, state, None)
    kept = torch.cat([g.neuron_gate.detach() for g in gates]) > 0
    assert int(kept.sum()) == target
    second_half = torch.cat([torch.arange(64) >= 32 for _ in gates])
    assert torch.equal(kept & ~second_half, torch.zeros_like(kept))  # every gate without a gradient closed


def test_checkpoints_keep_the_taylor_scores(tmp_path):
    """A resumed run ranks gates as an unbroken one: the trainer's checkpoint holds the accumulated scores beside the
    trainable tensors, and loading the checkpoint restores both."""
    from types import SimpleNamespace

    from conftest import build_tiny

    from effir_surgery.finetune.train import _trainer_class
    from effir_surgery.finetune.width import GATE_SCORES_FILE

    def gated():
        model = build_tiny("llama")
        model.requires_grad_(False)
        gates = insert_gates(model, resolve_spec(model.config))
        return model, gates

    model, gates = gated()
    torch.manual_seed(0)
    for g in gates:
        g.neuron_score.copy_(torch.rand_like(g.neuron_score))
        g.neuron_gate.data.copy_(torch.rand_like(g.neuron_gate))
    trainer_class = _trainer_class()
    checkpoint = tmp_path / "checkpoint-20"
    trainer_class._save(SimpleNamespace(args=SimpleNamespace(should_save=True), model=model, gates=gates), checkpoint)
    assert (checkpoint / GATE_SCORES_FILE).is_file()

    resumed, fresh = gated()
    assert all(not g.neuron_score.any() for g in fresh)
    trainer_class._load_from_checkpoint(SimpleNamespace(model=resumed, gates=fresh), str(checkpoint))
    for before, after in zip(gates, fresh, strict=True):
        assert torch.equal(after.neuron_score, before.neuron_score)
        assert torch.equal(after.neuron_gate, before.neuron_gate)
