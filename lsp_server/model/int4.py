"""4-bit weights on the CPU: `--dtype int4`.

Decoding one token on a CPU reads every weight once, and with a small model
that read is the step: SmolLM2-135M's bf16 weights are 270 MB a token, its
4-bit weights under 80 MB. `Int4Linear` keeps a linear layer's weight as
4-bit integers in groups of 32 along the input, each group with its own scale
and minimum (llama.cpp's Q4_1 layout), and multiplies with torch's CPU kernel
for that layout (`_weight_int4pack_mm_for_cpu`, AVX-512/AVX2), activations
in the model's float dtype.

For the default model this loses nothing: its GGUF file stores those layers
as Q4_1, whose groups of 32 span exactly their quantization levels 0..15, so
re-quantizing the dequantized weights gives back the same integers, scale
and minimum (up to the float rounding of the scale). Other models' weights are
rounded to 4 bits here, as llama.cpp's Q4_1 rounds them.

The kernel's cost grows with the rows it multiplies, where a float matrix
product's hardly does: a prefill chunk of hundreds of tokens would take several
times longer in 4 bits. So each layer also keeps its weight in the float dtype
(`weight`) for inputs of more than `ROWS` tokens: prefill runs as fast as in
bf16, and a decode step or a verification of drafted tokens reads 4 bits.
That copy is most of the model's memory (203 MiB of SmolLM2's 375), and the
designs without it were measured (`codetailor bench int4`, docs/benchmarks.md):
the kernel on every width makes prefill 2.7-3.2x slower, and expanding the 4
bits into one shared bf16 buffer before each float product 1.5-2.4x (the
expansion, a few passes over every weight per chunk, costs more than the product
over a 256-token chunk, which the CPU's matrix units make cheap). So it stays.

Packing a model (`pack`, `quantize_int4`) is thousands of small operations;
int4_cache.py keeps the packed weights on disk so that later starts read them.

LoRA adapters stay unmerged on top (PEFT wraps an `Int4Linear` like any
`nn.Linear`, with the adapter in float): merging an adapter's small update
into 4-bit weights and rounding again would lose most of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

GROUP = 32  # weights per scale and minimum, as in llama.cpp's Q4_0/Q4_1
LEVELS = 15  # 4 bits: 0..15
# Inputs of at most this many rows (tokens) use the 4-bit kernel, wider ones the float
# weight: measured on SmolLM2 (docs/benchmarks.md), a forward of 9 tokens still gains.
ROWS = 9
# The most tokens to draft per forward over 4-bit layers: the kernel multiplies rows in
# blocks of 4, so a verification of 1 + 3 tokens costs one block and 1 + 4 two.
# Measured on SmolLM2 (docs/benchmarks.md): 1 + 3 took 0.81-0.89x the decode time of
# 1 + 8 over the typing replay's recorded completions and three other files', at 1.81-1.94
# tokens per forward against 2.01-2.29.
DRAFT_TOKENS = 3


def kernel_available() -> bool:
    """Whether this torch has the CPU kernels for 4-bit weights (torch 2.6 and later)."""
    ops = torch.ops.aten
    return hasattr(ops, "_weight_int4pack_mm_for_cpu") and hasattr(
        ops, "_convert_weight_to_int4pack_for_cpu"
    )


def quantize_groups(weight: torch.Tensor, group: int = GROUP) -> tuple[torch.Tensor, torch.Tensor]:
    """`weight` (out, in) as integers 0..15 (int32, same shape) and, per group of `group`
    inputs, (scale, zero) with weight ~ (q - 8) * scale + zero (float32, (in/group, out, 2))."""
    out_features, in_features = weight.shape
    groups = weight.detach().to(torch.float32, copy=True)
    groups = groups.reshape(out_features, in_features // group, group)
    low = groups.amin(dim=-1, keepdim=True)
    high = groups.amax(dim=-1, keepdim=True)
    # A constant group keeps scale 1: its values all round to level 0, which is `low`.
    scale = torch.where(high > low, (high - low) / LEVELS, torch.ones_like(low))
    # In place: a large model has hundreds of these, and each new tensor costs page faults.
    levels = groups.sub_(low).div_(scale).round_().clamp_(0, LEVELS).to(torch.int32)
    zero = low + 8 * scale  # the kernel's levels are centred: (q - 8) * scale + zero
    scales_and_zeros = torch.cat([scale, zero], dim=-1).transpose(0, 1).contiguous()
    return levels.reshape(out_features, in_features), scales_and_zeros


def dequantize(levels: torch.Tensor, scales_and_zeros: torch.Tensor, group: int = GROUP) -> Any:
    """The float32 weight that `levels` and `scales_and_zeros` stand for (tests, checks)."""
    out_features, in_features = levels.shape
    scale = scales_and_zeros[..., 0].transpose(0, 1).unsqueeze(-1)
    zero = scales_and_zeros[..., 1].transpose(0, 1).unsqueeze(-1)
    grouped = levels.reshape(out_features, in_features // group, group).to(torch.float32)
    return ((grouped - 8) * scale + zero).reshape(out_features, in_features)


# A layer's packed 4-bit weight (`qweight`) and its (scale, zero) per group.
Packed = tuple[torch.Tensor, torch.Tensor]


def pack(weight: torch.Tensor, group: int = GROUP) -> Packed:
    """`weight` (out, in) in 4-bit groups, packed for the CPU kernel: (qweight,
    scales_and_zeros in `weight`'s dtype). The packed layout is this torch's and this
    CPU's (the kernel's tiles differ between AVX-512 and AVX2), so a copy kept on disk
    is keyed by both (int4_cache.py)."""
    levels, scales_and_zeros = quantize_groups(weight, group)
    qweight = torch.ops.aten._convert_weight_to_int4pack_for_cpu(levels, 1)
    return qweight, scales_and_zeros.to(weight.dtype)


class NarrowFastLinear(nn.Linear):
    """A linear layer that multiplies inputs of at most `ROWS` rows (decode steps, drafted
    tokens) in a faster form of its weight (`narrow`, in subclasses) and wider ones
    (prefill chunks) with `weight`, the float weight as it was.

    A subclass of `nn.Linear` so that PEFT wraps it with LoRA like any linear
    layer (PEFT reads `weight` for its shape, device and dtype); `weight` is a
    buffer rather than a parameter. An adapter must never be merged into it: the
    faster copy would not follow (`ResidentAdapters(merges=False)`,
    `apply_adapter(merge=False)`).
    """

    def __init__(self, linear: nn.Linear) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.compute_dtype = linear.weight.dtype
        self.register_buffer("weight", linear.weight.detach())
        bias = linear.bias
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)

    def narrow(self, rows: torch.Tensor) -> torch.Tensor:
        """`rows` (n, in_features) times the weight, n <= ROWS; bias included."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.compute_dtype)
        rows = x.reshape(-1, self.in_features)
        if rows.shape[0] > ROWS:
            return nn.functional.linear(x, self.weight, self.bias)
        return self.narrow(rows).reshape(*x.shape[:-1], self.out_features)


class Int4Linear(NarrowFastLinear):
    """A linear layer whose narrow inputs are multiplied by its weight in 4-bit groups (see
    the module doc); `qweight` holds the packed integers (as GPTQ layers name theirs)."""

    def __init__(self, linear: nn.Linear, group: int = GROUP, packed: Packed | None = None) -> None:
        """`packed`: the layer's (qweight, scales_and_zeros) as `pack` made them for this
        weight before (int4_cache.py keeps them on disk); None: pack the weight now."""
        super().__init__(linear)
        self.group = group
        qweight, scales_and_zeros = pack(linear.weight, group) if packed is None else packed
        self.register_buffer("qweight", qweight)
        self.register_buffer("scales_and_zeros", scales_and_zeros.to(self.compute_dtype))

    def packed_weight(self) -> Packed:
        """(qweight, scales_and_zeros): what `pack` made of this layer's weight."""
        qweight, scales_and_zeros = self.qweight, self.scales_and_zeros
        assert isinstance(qweight, torch.Tensor) and isinstance(scales_and_zeros, torch.Tensor)
        return qweight, scales_and_zeros

    def narrow(self, rows: torch.Tensor) -> torch.Tensor:
        out = torch.ops.aten._weight_int4pack_mm_for_cpu(
            rows, self.qweight, self.group, self.scales_and_zeros
        )
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        shape = f"in_features={self.in_features}, out_features={self.out_features}"
        return f"{shape}, int4 in groups of {self.group}"


def fuse(layers: Sequence[Int4Linear]) -> Packed | None:
    """One packed weight for 4-bit `layers` that multiply the same input (q, k and v; gate
    and up): a narrow input times it gives their outputs side by side, in one kernel call
    instead of one per layer. None where that would not be exact.

    The packed weights are concatenated along their first dimension; that is the packed
    form of the layers' weights stacked only where each layer's rows fill the kernel's
    tiles (64 rows on AVX-512, so SmolLM2's q, k, v, gate and up), which a probe
    product checks. The layers then keep views into the fused weight (no second copy);
    their (scale, zero) pairs are copied (about 9 MiB for SmolLM2), since the kernel
    reads them contiguous."""
    if len(layers) < 2 or len({layer.in_features for layer in layers}) != 1:
        return None
    if len({(layer.group, layer.compute_dtype) for layer in layers}) != 1:
        return None
    qweights = [layer.packed_weight()[0] for layer in layers]
    qweight = torch.cat(qweights)
    scales_and_zeros = torch.cat([layer.packed_weight()[1] for layer in layers], dim=1)
    probe = torch.linspace(-1, 1, layers[0].in_features, dtype=layers[0].compute_dtype)[None]
    mm = torch.ops.aten._weight_int4pack_mm_for_cpu
    with torch.no_grad():
        fused = mm(probe, qweight, layers[0].group, scales_and_zeros)
        apart = torch.cat(
            [
                mm(probe, q, lay.group, lay.scales_and_zeros)
                for q, lay in zip(qweights, layers, strict=True)
            ],
            dim=-1,
        )
    if not torch.equal(fused, apart):
        return None
    for layer, view in zip(layers, qweight.split([q.shape[0] for q in qweights]), strict=True):
        layer.qweight = view
    return qweight, scales_and_zeros


class PackedLinear(NarrowFastLinear):
    """A float linear layer whose narrow inputs are multiplied by its weight in oneDNN's
    own blocked layout: the output projection under int4, which stays bf16 (see
    `quantize_int4`). The same products, bit for bit, in 0.9x the step time on SmolLM2
    (docs/benchmarks.md; `codetailor bench int4` measured 0.93x again), for a second
    copy of the weight (54 MiB there)."""

    def __init__(self, linear: nn.Linear, packed: torch.Tensor) -> None:
        super().__init__(linear)
        self.register_buffer("packed", packed)

    @classmethod
    def wrap(cls, linear: nn.Linear) -> nn.Linear:
        """`linear` packed, or as it is where this torch or CPU cannot pack it or the
        packed product differs from the plain one."""
        try:
            packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach())
            layer = cls(linear, packed)
            probe = torch.linspace(-1, 1, linear.in_features, dtype=linear.weight.dtype)
            with torch.no_grad():
                same = torch.equal(
                    layer(probe[None]),
                    nn.functional.linear(probe[None], linear.weight, linear.bias),
                )
        except (AttributeError, RuntimeError):  # no such op, or no oneDNN for this dtype
            return linear
        return layer if same else linear

    def narrow(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(rows, self.packed, self.bias, "none", [], "")


def quantizable(linear: nn.Module, group: int = GROUP) -> bool:
    """Whether the kernel takes this layer: a plain float linear layer whose input size is
    a multiple of the group and whose output size is a multiple of 16 (the kernel's tiles)."""
    return (
        type(linear) is nn.Linear
        and linear.in_features % group == 0
        and linear.out_features % 16 == 0
        and linear.weight.is_floating_point()
    )


SKIP = ("lm_head",)  # layers `quantize_int4` leaves in float (see there)


def int4_layers(model: nn.Module, skip: tuple[str, ...] = SKIP) -> dict[str, nn.Linear]:
    """The linear layers of `model` that `quantize_int4` turns into 4-bit ones, by name."""
    return {
        name: module
        for name, module in model.named_modules()
        if quantizable(module) and not name.endswith(skip)
    }


def quantize_int4(
    model: nn.Module, *, skip: tuple[str, ...] = SKIP, packed: Mapping[str, Packed] | None = None
) -> int:
    """Replace `model`'s linear layers, in place, by `Int4Linear` where the kernel takes
    them, except those whose name ends with one of `skip` (by default the output
    projection: in the default model it is the Q8_0 token embedding, which 4 bits would
    round; it is packed for oneDNN instead, `PackedLinear`); return how many were
    replaced by 4-bit layers. `packed`: each such layer's packed weights by name, as
    `pack` made them from these weights before (a layer missing there is packed now)."""
    replaced = 0
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if full.endswith(skip) and type(child) is nn.Linear:
                setattr(module, child_name, PackedLinear.wrap(child))
                continue
            if full.endswith(skip) or not quantizable(child):
                continue
            ready = packed.get(full) if packed is not None else None
            setattr(module, child_name, Int4Linear(child, packed=ready))
            replaced += 1
    return replaced


def packed_weights(model: nn.Module) -> dict[str, Packed]:
    """Every `Int4Linear` layer's packed weights by name (what `quantize_int4` takes)."""
    layers = {n: m for n, m in model.named_modules() if isinstance(m, Int4Linear)}
    return {name: layer.packed_weight() for name, layer in layers.items()}
