"""FSDP support of ``finetune``, on a one-process CPU mesh (gloo).

accelerate shards models with FSDP only on GPUs, so a whole FSDP run cannot happen on this machine. These tests
cover the code that meets sharded parameters instead, with real FSDP2 sharding (``fully_shard``) of the tiny model:
a checkpoint is written from the full state dict the trainer gathers (a sharded parameter holds one process's
shard), resuming distributes checkpoint tensors back onto the shards, and the weights gathered at the end load into
an unsharded copy that encodes exactly as the trained model.
"""

import copy
import socket
from types import SimpleNamespace

import pytest
import torch

from effir_surgery.config import FinetuneConfig
from effir_surgery.errors import EffirError


@pytest.fixture(scope="module")
def mesh():
    """A one-process gloo group on loopback and its CPU device mesh; torn down after the module."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    if dist.is_initialized():
        pytest.skip("a process group already exists in this process")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        yield init_device_mesh("cpu", (1,))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    from conftest import build_tiny, save_tiny_source, tiny_tokenizer

    return save_tiny_source(build_tiny("llama"), tiny_tokenizer(), tmp_path_factory.mktemp("fsdp") / "tiny")


def _config(source, tmp_path, **overrides) -> FinetuneConfig:
    values = dict(model=str(source), train=str(tmp_path), output=tmp_path / "out", device="cpu", max_length=32)
    values.update(overrides)
    return FinetuneConfig(**values)


def _trained_model(source, config):
    """The model as ``finetune`` builds it, with every trainable tensor moved away from its initial value."""
    from effir_surgery.arch import resolve_spec
    from effir_surgery.finetune.model import _add_trainables, _load_for_training
    from effir_surgery.load import load_config, resolve_source

    spec = resolve_spec(load_config(resolve_source(str(source))))
    model = _load_for_training(config, str(source))
    _add_trainables(model, config, spec)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.randn(param.shape, generator=generator))
    return model, spec


def _shard(model, mesh):
    """FSDP2-shard every decoder layer and the base model, in place, as accelerate does on GPUs."""
    from torch.distributed.fsdp import fully_shard

    base = model[0].auto_model
    for layer in base.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(base, mesh=mesh)
    return model


def _full_state(model) -> dict:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


TEXTS = ["alpha beta gamma", "delta epsilon", "zeta eta theta iota"]


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_gathered_weights_give_an_unsharded_copy_that_encodes_the_same(source, mesh, tmp_path, lora):
    from torch.distributed.tensor import DTensor

    from effir_surgery.finetune.checkpoints import unsharded_copy

    config = _config(source, tmp_path, lora=lora)
    model, spec = _trained_model(source, config)
    expected = model.encode(TEXTS, convert_to_tensor=True)
    sharded = _shard(copy.deepcopy(model), mesh)
    assert any(isinstance(p, DTensor) for p in sharded.parameters()), "the copy was not sharded"
    copy_, _ = unsharded_copy(config, str(source), spec, _full_state(sharded))
    assert not any(isinstance(p, DTensor) for p in copy_.parameters())
    assert torch.equal(copy_.encode(TEXTS, convert_to_tensor=True), expected)


def test_checkpoint_tensors_come_from_the_gathered_state_dict(source, mesh, tmp_path):
    """Under FSDP the values written are the gathered full tensors, only the trainable ones, under parameter
    names; without a state dict they are the parameters themselves."""
    from effir_surgery.finetune.checkpoints import trainable_tensors

    config = _config(source, tmp_path, lora=True)
    model, _ = _trained_model(source, config)
    plain = trainable_tensors(model)
    assert plain and all(n in dict(model.named_parameters()) for n in plain)
    assert all("lora_" in n for n in plain), "LoRA checkpoints hold only adapter tensors"
    sharded = _shard(copy.deepcopy(model), mesh)
    gathered = trainable_tensors(sharded, _full_state(sharded))
    assert gathered.keys() == plain.keys()
    assert all(torch.equal(gathered[n], plain[n]) for n in plain)
    with pytest.raises(EffirError, match="lacks trainable parameters"):
        trainable_tensors(sharded, {})


def test_resume_distributes_checkpoint_tensors_onto_the_shards(source, mesh, tmp_path):
    from effir_surgery.finetune.checkpoints import load_trainable, trainable_tensors

    config = _config(source, tmp_path, lora=False)
    trained, _ = _trained_model(source, config)
    checkpoint = trainable_tensors(trained)
    fresh, _ = _trained_model(source, config.model_copy(update={"seed": 7}))
    with torch.no_grad():  # start from other values than the checkpoint's
        for param in fresh.parameters():
            param.zero_()
    sharded = _shard(fresh, mesh)
    load_trainable(sharded, checkpoint)
    restored = trainable_tensors(sharded, _full_state(sharded))
    assert all(torch.equal(restored[n], checkpoint[n]) for n in checkpoint)
    wrong = dict(checkpoint)
    wrong["0.auto_model.not_a_parameter"] = torch.zeros(1)
    with pytest.raises(EffirError, match="does not match this run"):
        load_trainable(sharded, wrong, "ckpt-7")


def test_only_the_main_process_writes_checkpoints(tmp_path):
    from effir_surgery.finetune.checkpoints import TRAINABLE_FILE
    from effir_surgery.finetune.train import _trainer_class

    other = SimpleNamespace(args=SimpleNamespace(should_save=False, output_dir=str(tmp_path)), model=None)
    _trainer_class()._save(other, str(tmp_path / "checkpoint-1"))
    assert not (tmp_path / "checkpoint-1" / TRAINABLE_FILE).exists()


def test_fsdp_needs_full_state_dicts(monkeypatch):
    from effir_surgery.finetune.checkpoints import _check_fsdp_settings

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_STATE_DICT_TYPE", "SHARDED_STATE_DICT")
    with pytest.raises(EffirError, match="set fsdp_state_dict_type: FULL_STATE_DICT"):
        _check_fsdp_settings()
    monkeypatch.setenv("FSDP_STATE_DICT_TYPE", "FULL_STATE_DICT")
    _check_fsdp_settings()
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "false")
    monkeypatch.setenv("FSDP_STATE_DICT_TYPE", "SHARDED_STATE_DICT")
    _check_fsdp_settings()
