"""Streaming surgery: carry out a ``SurgeryPlan`` from a checkpoint folder to a new folder one tensor at a time.

For models that do not fit in memory. The result is the folder ``surgery.apply_plan`` + ``save.save_model`` would
write, byte for byte: the same ``config.json`` (the post-surgery config, written by transformers from a model built
on the meta device), the same shards, index, tokenizer, sentence-transformers files, plan, provenance and card.

How: the plan is checked against the checkpoint's config and tensor headers first (nothing is written for a plan
made for another model). The output tensors are listed from the post-surgery model class on the meta device (tied
weights removed as transformers removes them), split into shards with huggingface_hub's splitter (the one
``save_pretrained`` uses), and each shard is written with a precomputed safetensors header followed by its tensors
in safetensors' own order. Each tensor is read from the source (``checkpoint.CheckpointReader``: memory-mapped, closed
after every tensor), sliced to the plan's kept MLP rows or columns, cast, written and dropped. Peak memory is about
one tensor (the largest is the embedding matrix), not one shard and not the model.
"""

from __future__ import annotations

import json
import math
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from ._logging import info, progress
from ._memory import available_memory, format_bytes
from .arch import resolve_spec, shape_from_config
from .check import check_reload, preflight, reload_inputs
from .checkpoint import CheckpointReader
from .costs import param_count
from .devices import torch_dtype
from .errors import EffirError
from .folder import WEIGHTS_INDEX_FILE, Provenance
from .layerwise import load_layerwise
from .load import load_config, load_generation_config, load_tokenizer, resolve_source
from .ops import OPERATORS
from .plan import SurgeryPlan
from .save import MAX_SHARD_SIZE, atomic_folder, write_support_files
from .surgery import SurgeryRecord, layer_operations, model_class, plan_provenance, planned_operations, surgery_config

# safetensors writes a file's tensors ordered by dtype (this order, wider types first) and then by name.
_SAFETENSORS_ORDER = ["U64", "I64", "F64", "C64", "F32", "U32", "I32", "BF16", "F16", "U16", "I16", "I8", "U8", "BOOL"]
_SAFETENSORS_CODES = {
    "float64": "F64",
    "float32": "F32",
    "bfloat16": "BF16",
    "float16": "F16",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
}


class StreamingResult(BaseModel):
    """Outcome of a streaming surgery.

    Attributes:
        record: what was done (the same ``SurgeryRecord`` ``apply_plan`` returns for this plan).
        reload: the clean-process reload report, when the check ran; ``reload_skipped`` says why it did not.
        source_bytes / output_bytes: weights read / written (tensor data, headers excluded).
    """

    record: SurgeryRecord
    output: Path
    reload: dict | None = None
    reload_skipped: str | None = None
    source_bytes: int
    output_bytes: int
    shards: int
    seconds: float


@dataclass(frozen=True)
class _Entry:
    """One output tensor: its name (the same in the source), shape after surgery, and for a narrowed MLP
    projection the kept neurons along ``dim`` (rows of gate/up and their biases, columns of down)."""

    name: str
    shape: tuple[int, ...]
    dim: int = 0
    keep: tuple[int, ...] | None = None


def _nbytes(shape: tuple[int, ...], itemsize: int) -> int:
    return math.prod(shape) * itemsize


def write_safetensors(path: Path, entries: list[_Entry], dtype, produce, metadata: dict[str, str] | None) -> None:
    """Write a safetensors file tensor by tensor: the header is computed from names, shapes and ``dtype`` alone,
    then ``produce(entry)`` supplies each tensor just before its bytes are written (at most one is alive).

    The bytes equal ``safetensors.torch.save_file`` of the same tensors: compact JSON header with ``__metadata__``
    first, tensors ordered by dtype then name, header padded with spaces to a multiple of 8.
    """
    import torch

    if sys.byteorder != "little":
        raise EffirError("Streaming surgery writes little-endian safetensors and needs a little-endian machine.")
    code = _SAFETENSORS_CODES[str(dtype).removeprefix("torch.")]
    itemsize = torch.empty((), dtype=dtype).element_size()
    ordered = sorted(entries, key=lambda e: (_SAFETENSORS_ORDER.index(code), e.name))
    header: dict = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for entry in ordered:
        size = _nbytes(entry.shape, itemsize)
        header[entry.name] = {"dtype": code, "shape": list(entry.shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(text)))
        handle.write(text)
        for entry in ordered:
            tensor = produce(entry)
            if tensor.dtype != dtype or tuple(tensor.shape) != entry.shape:
                raise AssertionError(f"{entry.name}: produced {tensor.dtype} {list(tensor.shape)}, expected {entry}")
            handle.write(memoryview(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()))
            del tensor


def _short(value) -> str:
    return f"{value[:4]}..." if isinstance(value, list) and len(value) > 4 else str(value)


def _first_difference(planned: BaseModel, actual: BaseModel) -> str:
    """The first field of two ``ModelShape`` objects that differs, in words."""
    theirs = actual.model_dump()
    for key, value in planned.model_dump().items():
        if value != theirs[key]:
            return f"{key} is {_short(value)} in the plan, {_short(theirs[key])} in this checkpoint"
    return "no field differs"


class StreamingSurgery:
    """A plan checked against a checkpoint folder and turned into the list of output tensors; ``write`` carries
    it out. Creating one reads only the config and the safetensors headers, and writes nothing.

    Attributes:
        config: the post-surgery config; ``model``: its causal LM class built on the meta device (in ``dtype``).
        record: the ``SurgeryRecord`` of this plan (``apply_plan`` returns the same).
        entries: output tensors in state-dict order; ``split``: their assignment to shard files.
        source_bytes / output_bytes: tensor data read / written.
    Raises:
        EffirError: the folder is not a supported safetensors checkpoint, the plan was made for a model of another
            shape, or the checkpoint lacks a tensor (or holds one of another shape) that its config builds.
    """

    def __init__(
        self,
        folder: str | Path,
        plan: SurgeryPlan,
        *,
        dtype: str = "float32",
        max_shard_size: int | str = MAX_SHARD_SIZE,
    ):
        import torch
        from huggingface_hub import split_state_dict_into_shards_factory
        from transformers.core_model_loading import revert_weight_conversion
        from transformers.modeling_utils import remove_tied_weights_from_state_dict

        self.folder = Path(folder)
        source = resolve_source(str(folder))
        if source.kind != "folder":
            raise EffirError(f"Streaming surgery reads a local safetensors folder; '{folder}' is a {source.kind}.")
        config = load_config(source)
        self.spec = spec = resolve_spec(config)
        shape = shape_from_config(config)
        if plan.shape != shape:
            raise EffirError(
                f"The plan was made for {plan.model} ({plan.shape.num_layers} layers), but '{folder}' differs: "
                f"{_first_difference(plan.shape, shape)}; re-plan on this model."
            )
        self.plan = plan
        self.dtype_name = dtype
        self.dtype = torch_dtype(dtype)
        self.max_shard_size = max_shard_size
        self.reader = CheckpointReader(self.folder)

        # What the source checkpoint must hold: the tensors its own class has (as from_pretrained reads them).
        with torch.device("meta"):
            source_model = model_class(config, True)(config)
        wanted = remove_tied_weights_from_state_dict(source_model.state_dict(), source_model)
        self._check_source({name: tuple(t.shape) for name, t in wanted.items()})

        config_after = surgery_config(config, plan.mlp_widths, plan.dropped_attention_after, plan_provenance(plan))
        config_after._name_or_path = getattr(config, "_name_or_path", "")
        cls = model_class(config_after, True)
        with torch.device("meta"):
            model = cls(config_after)
        model.to(self.dtype)  # meta tensors: only the dtype, which save_pretrained writes into config.json
        model.generation_config = load_generation_config(self.folder)  # as from_pretrained attaches it
        self.config, self.model = config_after, model

        params_before, params_after = _numel(source_model), _numel(model)
        expected = param_count(shape_from_config(config_after)).total
        if params_after != expected:
            raise AssertionError(f"parameter count {params_after:,} differs from the cost model's {expected:,}")
        self.record = SurgeryRecord(
            operations=planned_operations(plan),
            params_before=params_before,
            params_after=params_after,
            config_class=cls.__name__,
        )

        # The output tensors, named and ordered as save_pretrained names and orders them for the in-memory model:
        # from_pretrained records the key conversions its checkpoint needed (none for these families: []), and
        # save_pretrained reverts them, which rebuilds the state dict in natural key order.
        model._weight_conversions = []
        state = remove_tied_weights_from_state_dict(model.state_dict(), model)
        state = revert_weight_conversion(model, state)
        layers = getattr(model.base_model, spec.layers)
        layers_path = next(name for name, module in model.named_modules() if module is layers)
        narrowed: dict[str, tuple[int, tuple[int, ...]]] = {}
        for key, keep in plan.kept_neurons.items():
            mlp = f"{layers_path}.{int(key)}.{spec.mlp}."
            for proj, dim in ((spec.gate, 0), (spec.up, 0), (spec.down, 1)):
                narrowed[f"{mlp}{proj}.weight"] = (dim, tuple(keep))
            for proj in (spec.gate, spec.up):  # per-neuron biases; down's bias is in hidden space and stays whole
                narrowed[f"{mlp}{proj}.bias"] = (0, tuple(keep))
        self.entries = []
        for name, tensor in state.items():
            dim, keep = narrowed.get(name, (0, None))
            shape_after = list(self.reader.tensors[name].shape)
            if keep is not None:
                shape_after[dim] = len(keep)
            if tuple(shape_after) != tuple(tensor.shape):
                expected_shape = list(tensor.shape)
                raise AssertionError(f"{name}: surgery gives {shape_after}, {cls.__name__} expects {expected_shape}")
            self.entries.append(_Entry(name, tuple(tensor.shape), dim, keep))
        itemsize = torch.empty((), dtype=self.dtype).element_size()
        sizes = {e.name: _nbytes(e.shape, itemsize) for e in self.entries}
        self.split = split_state_dict_into_shards_factory(
            sizes,
            get_storage_size=lambda size: size,
            filename_pattern="model{suffix}.safetensors",
            max_shard_size=max_shard_size,
        )
        self.output_bytes = sum(sizes.values())
        self.source_bytes = self.reader.nbytes

    def _check_source(self, wanted: dict[str, tuple[int, ...]]) -> None:
        problems = []
        for name, shape in wanted.items():
            stored = self.reader.tensors.get(name)
            if stored is None:
                problems.append(f"'{name}' is missing")
            elif stored.shape != shape:
                problems.append(f"'{name}' is {list(stored.shape)}, config.json builds {list(shape)}")
        if problems:
            more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
            raise EffirError(
                f"The weights in '{self.folder}' do not match its config.json: {', '.join(problems[:3])}{more}."
            )

    def _produce(self, entry: _Entry):
        import torch

        index = None if entry.keep is None else torch.tensor(entry.keep, dtype=torch.long)
        return self.reader.read(entry.name, dtype=self.dtype, index=index, dim=entry.dim)

    def write(
        self,
        out: str | Path,
        *,
        tokenizer,
        encoder=None,
        provenance: Provenance | dict | None = None,
        overwrite: bool = False,
        verify: bool = True,
        extra_files: dict[str, str] | None = None,
        memory_fraction: float = 0.5,
    ) -> StreamingResult:
        """Write the pruned folder to ``out`` atomically (as ``save.save_model`` does), streaming the weights.

        Args:
            tokenizer, encoder, provenance, extra_files: as for ``save.save_model``.
            verify: reload the folder in a clean process (plain transformers) and compare its logits and hidden
                states with the source run layer by layer with the plan's operators applied to each layer. Skipped,
                with the reason in ``reload_skipped``, when the clean process would need more than
                ``memory_fraction`` of the available RAM (it holds the causal LM and the base model at once).
        """
        started = time.perf_counter()
        by_name = {e.name: e for e in self.entries}
        reload, skipped = None, None
        with atomic_folder(out, overwrite) as tmp:
            # config.json and generation_config.json exactly as save_pretrained writes them (no weights here)
            self.model.save_pretrained(tmp, state_dict={}, max_shard_size=self.max_shard_size)
            bar = progress(None, total=len(self.entries), desc="writing tensors")

            def produce(entry):
                bar.update(1)
                return self._produce(entry)

            for filename, names in self.split.filename_to_tensors.items():
                write_safetensors(
                    tmp / filename, [by_name[n] for n in names], self.dtype, produce, metadata={"format": "pt"}
                )
            bar.close()
            if self.split.is_sharded:
                index = {
                    "metadata": {"total_parameters": self.model.num_parameters(), **self.split.metadata},
                    "weight_map": self.split.tensor_to_filename,
                }
                (tmp / WEIGHTS_INDEX_FILE).write_text(
                    json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8"
                )
            write_support_files(
                tmp,
                self.config,
                tokenizer,
                out=out,
                encoder=encoder,
                plan=self.plan,
                provenance=provenance,
                extra_files=extra_files,
            )
            problems = preflight(tmp, reload=False).problems
            if problems:
                raise AssertionError(f"streamed folder fails the pre-flight check: {problems}")
            if verify:
                need, available = 2 * self.output_bytes, available_memory()
                if need > memory_fraction * available:
                    skipped = (
                        f"loading it needs about {format_bytes(need)} (causal LM and base model), more than "
                        f"{memory_fraction:.0%} of the {format_bytes(available)} of RAM available"
                    )
                else:
                    info(
                        "Checking the saved folder in a clean process (plain transformers, no effir_surgery) against "
                        "the source run layer by layer with the plan applied ..."
                    )
                    inputs = reload_inputs(self.config)
                    reload = check_reload(tmp, inputs, self.reference_outputs(inputs), self.dtype_name)
        return StreamingResult(
            record=self.record,
            output=Path(out),
            reload=reload,
            reload_skipped=skipped,
            source_bytes=self.source_bytes,
            output_bytes=self.output_bytes,
            shards=len(self.split.filename_to_tensors),
            seconds=round(time.perf_counter() - started, 2),
        )

    def reference_outputs(self, inputs: dict) -> dict:
        """``{"logits", "hidden"}`` of the pruned model on ``inputs``, computed without the pruned folder: the
        source checkpoint runs layer by layer (``layerwise.LayerwiseModel``) and each layer goes through the plan's
        operators (the ones ``apply_plan`` uses) right after it is loaded."""
        plan, spec = self.plan, self.spec
        loaded = load_layerwise(resolve_source(str(self.folder)), self.dtype_name, "cpu")

        calls = layer_operations(plan)

        def before_layer(i, layer):
            for j, name, args in calls:
                if j == i:
                    OPERATORS[name](layer, spec, *args)

        (hidden,) = loaded.run([inputs], before_layer=before_layer)
        return loaded.outputs(inputs, hidden)


def _numel(model) -> int:
    return sum(p.numel() for p in model.parameters())


def apply_plan_streaming(
    source_folder: str | Path,
    plan: SurgeryPlan,
    out_folder: str | Path,
    *,
    tokenizer=None,
    dtype: str = "float32",
    max_shard_size: int | str = MAX_SHARD_SIZE,
    **write_options,
) -> StreamingResult:
    """Carry out ``plan`` on the safetensors checkpoint in ``source_folder`` and save the pruned model to
    ``out_folder``, streaming tensor by tensor. The folder equals what ``apply_plan`` + ``save_model`` write for
    the model loaded in ``dtype`` (same ``max_shard_size``).

    Args:
        tokenizer: saved with the model (default: the source folder's tokenizer).
        write_options: ``encoder``, ``provenance``, ``overwrite``, ``verify``, ``extra_files``, ``memory_fraction``
            (see ``StreamingSurgery.write``).
    Raises:
        EffirError: the plan does not fit this checkpoint (checked before anything is written), bad weights, or an
            existing output folder without ``overwrite``.
    """
    job = StreamingSurgery(source_folder, plan, dtype=dtype, max_shard_size=max_shard_size)
    if tokenizer is None:
        tokenizer = load_tokenizer(resolve_source(str(source_folder)))
    return job.write(out_folder, tokenizer=tokenizer, **write_options)
