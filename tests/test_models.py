"""The timm contract every registered model of the package meets, then RenseNet, ECM and block-level checks."""
from __future__ import annotations

import copy
import math
import warnings

import pytest
import timm
import torch
import torch.nn.functional as F

import rensenet  # noqa: F401  (registers the variants)
from rensenet.models import (
    BLOCK_VARIANTS,
    EdgeConservativeModule,
    RenseBlock,
    RenseNet,
    RenseNetLoss,
    RenseNetOutput,
    Transition,
    pooling_residual,
)

#: Every registered model of the package: registering a model puts it under the contract below.
MODELS = timm.list_models("rensenet_*") + timm.list_models("ecm_*")
SIZES = [(48, 48), (64, 64), (97, 75)]


def _input(model: torch.nn.Module, batch: int = 2, size=None) -> torch.Tensor:
    c, h, w = model.pretrained_cfg["input_size"]
    return torch.randn(batch, model.in_chans, *(size or (h, w)))


def test_every_model_family_is_registered() -> None:
    assert set(MODELS) >= {"rensenet_s", "rensenet_m", "ecm_resnet18", "ecm_densenet121"}


@pytest.mark.parametrize("name", MODELS)
def test_contract_forward_backward_reach_every_parameter(name: str) -> None:
    """Training mode, 3 classes: finite logits of the right shape, and the loss of all heads reaches every weight.

    timm's ResNet zero-initialises the last norm of each block (``zero_init_last``), which makes the gradient of
    that block's other weights exactly 0 at the start; those norms are set to 1 first, so a non-zero gradient
    everywhere means every weight is connected to the loss."""
    model = timm.create_model(name, num_classes=3).train()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d) and not m.weight.any():
            torch.nn.init.ones_(m.weight)
    x, y = _input(model), torch.tensor([0, 2])
    logits = model(x)
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    out = model.forward_heads(x)
    assert all(h.shape == (2, 3) for h in out)
    RenseNetLoss()(out, y).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reaches {missing[:5]}"


@pytest.mark.parametrize("name", MODELS)
def test_contract_features_then_head_is_forward(name: str) -> None:
    model = timm.create_model(name).eval()
    x = _input(model)
    with torch.no_grad():
        features = model.forward_features(x)
        assert tuple(features.shape[-2:]) == tuple(model.pretrained_cfg["pool_size"])  # at the cfg's input size
        assert features.shape[1] == model.num_features
        assert torch.allclose(model.forward_head(features), model(x), atol=1e-6)
        pooled = model.forward_head(features, pre_logits=True)
    assert pooled.shape == (2, model.head_hidden_size)
    assert torch.allclose(pooled, features.mean(dim=(2, 3)), atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_contract_forward_intermediates_equal_features_only(name: str) -> None:
    model = timm.create_model(name).eval()
    features = timm.create_model(name, features_only=True).eval()
    features.model.load_state_dict(model.state_dict())  # the same weights in both
    x = _input(model, size=(64, 64))
    with torch.no_grad():
        outs = features(x)
        inter = model.forward_intermediates(x, intermediates_only=True)
        last, inter2 = model.forward_intermediates(x)
    assert len(outs) == len(inter) == len(model.feature_info) and features.feature_info.module_name()[-1] == "fusion"
    modules = dict(model.named_modules())  # each stage is a layer a CAM (and the CAM grid) can target by name
    assert [f["module"] for f in model.feature_info if f["module"] not in modules] == []
    for a, b, c in zip(outs, inter, inter2):
        assert torch.equal(a, b) and torch.equal(a, c)
    assert [o.shape[1] for o in outs] == features.feature_info.channels()
    assert [64 // o.shape[-1] for o in outs] == features.feature_info.reduction()
    assert torch.equal(last, model.forward_features(x))
    two = timm.create_model(name, features_only=True, out_indices=(1, 3)).eval()
    assert [o.shape[1] for o in two(x)] == [model.feature_info[1]["num_chs"], model.feature_info[3]["num_chs"]]


@pytest.mark.parametrize("name", MODELS)
def test_contract_reset_classifier_and_no_pooling(name: str) -> None:
    model = timm.create_model(name).eval()
    x = _input(model)
    with torch.no_grad():
        features = model.forward_features(x)
        model.reset_classifier(0)
        assert model(x).shape == (2, model.num_features)
        model.reset_classifier(0, "")  # no classifier, no pooling: the map itself
        assert torch.equal(model(x), features)
        model.reset_classifier(5, "avg")
        assert model(x).shape == (2, 5) and model.get_classifier().out_features == 5
        assert model.forward_heads(x).ecm.shape == (2, 5)
        unpooled = timm.create_model(name, num_classes=0, global_pool="")
        assert unpooled.eval()(x).shape == features.shape
    with pytest.raises(ValueError, match="needs num_classes=0"):
        timm.create_model(name, num_classes=2, global_pool="")


@pytest.mark.parametrize("name", MODELS)
def test_contract_default_cfg_names_real_layers(name: str) -> None:
    model = timm.create_model(name)
    cfg, state = model.pretrained_cfg, model.state_dict()
    assert cfg["first_conv"] + ".weight" in state
    assert state[cfg["first_conv"] + ".weight"].shape[1] == cfg["input_size"][0] == model.in_chans
    classifiers = (cfg["classifier"],) if isinstance(cfg["classifier"], str) else cfg["classifier"]
    for c in classifiers:
        assert c + ".weight" in state and state[c + ".weight"].shape[0] == cfg["num_classes"]


@pytest.mark.parametrize("name", MODELS)
def test_contract_compile_captures_one_graph(name: str) -> None:
    """torch.compile(fullgraph=True) must capture forward as one graph (no breaks). The aot_eager backend checks
    exactly that in seconds; inductor compiles the same graph but its CPU code generation takes over a minute.
    TorchScript (deprecated in torch 2.14, still used for deployment) proves forward has no Python-only flow."""
    model = timm.create_model(name).eval()
    x = _input(model, size=(97, 75))
    torch._dynamo.reset()
    with torch.no_grad():
        a, b = model(x), model(x)
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True)(x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            scripted = torch.jit.script(model)(x)
    assert torch.equal(a, b)
    assert torch.allclose(a, compiled, atol=1e-5) and torch.allclose(a, scripted, atol=1e-5)


# --- RenseNet itself ------------------------------------------------------------------------------------------
VARIANTS = timm.list_models("rensenet_*")


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("in_chans", [1, 3])
def test_rensenet_any_input_size_and_batch_one(name: str, in_chans: int) -> None:
    """Square or not, odd or not, from 32 px: three finite heads; batch 1 in eval mode equals the batched result."""
    model = timm.create_model(name, num_classes=3, in_chans=in_chans).eval()
    for size in SIZES + [(32, 32)]:
        x = torch.randn(4, in_chans, *size)
        with torch.no_grad():
            out = model.forward_heads(x)
            single = model(x[:1])
        assert all(h.shape == (4, 3) and torch.isfinite(h).all() for h in out)
        assert torch.allclose(single, out.fused[:1], atol=1e-5)


@pytest.mark.parametrize("name", VARIANTS)
def test_rensenet_without_ecm_has_one_head(name: str) -> None:
    model = timm.create_model(name, num_classes=2, ecm=False)
    x, y = torch.randn(3, 1, 64, 64), torch.tensor([0, 1, 1])
    out = model.forward_heads(x)
    assert out.ecm is None and out.backbone is out.fused
    RenseNetLoss()(out, y).backward()
    assert all(p.grad is not None for p in model.parameters())
    assert "ecm" not in {n.split(".")[0] for n, _ in model.named_parameters()}
    assert [f["module"] for f in model.feature_info][-1] == f"stages.{len(model.stages) - 1}.block"


def test_default_cfg_and_sizes() -> None:
    model = timm.create_model("rensenet_s", num_classes=2, in_chans=1)
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - 410_000) / 410_000 < 0.10, n  # the prototype's size with ECM, 2 classes
    backbone = timm.create_model("rensenet_s", num_classes=2, in_chans=1, ecm=False)
    assert 120_000 < sum(p.numel() for p in backbone.parameters()) < 150_000
    assert backbone.ecm is None and backbone.forward_heads(torch.randn(2, 1, 48, 48)).ecm is None
    assert model.pretrained_cfg["input_size"] == (1, 64, 64) and model.in_chans == 1
    assert model.default_cam_layers == ["stages.1.block", "ecm.stages.0.conv2"]
    assert backbone.default_cam_layers == ["stages.1.block"]


def test_bad_input_and_arguments_fail_clearly() -> None:
    model = timm.create_model("rensenet_s", in_chans=1)
    with pytest.raises(ValueError, match=r"expects input of shape \(batch, 1"):
        model(torch.randn(1, 3, 64, 64))
    with pytest.raises(RuntimeError, match="(?i)no pretrained weights"):
        timm.create_model("rensenet_m", pretrained=True)  # nothing shipped for it (rensenet_s: its first tag)
    with pytest.raises(ValueError, match="unknown Rense block variant"):
        RenseNet(block="resnet")
    with pytest.raises(TypeError, match="unexpected arguments"):
        RenseNet(grow_rate=4)


def test_volumes_with_spatial_dims_3() -> None:
    model = RenseNet(in_chans=1, num_classes=2, growth_rate=4, block_config=(1, 1, 1), spatial_dims=3)
    out = model.forward_heads(torch.randn(2, 1, 32, 24, 20))
    assert out.fused.shape == out.ecm.shape == (2, 2)
    RenseNetLoss()(out, torch.tensor([0, 1])).backward()
    assert all(p.grad is not None for p in model.parameters())


# --- Edge Conservative Module ---------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_pooling_residual_of_constant_map_is_zero(mode: str) -> None:
    f = torch.full((1, 3, 8, 10), 2.5)
    assert torch.equal(pooling_residual(f, mode), torch.zeros_like(f))


def test_pooling_residual_nearest_is_zero_on_2x2_constant_blocks_bilinear_is_not() -> None:
    blocks = torch.randn(1, 2, 4, 5)
    f = blocks.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # 8 x 10, constant on each 2x2 block
    assert torch.allclose(pooling_residual(f, "nearest"), torch.zeros_like(f), atol=1e-6)
    assert pooling_residual(f, "bilinear").abs().max() > 0.01  # bilinear up2 blends neighbouring blocks


def test_pooling_residual_of_single_bright_pixel_by_hand() -> None:
    v = 4.0
    f = torch.zeros(1, 1, 4, 4)
    f[0, 0, 1, 1] = v
    # avgpool2 -> [[v/4, 0], [0, 0]] = [[1, 0], [0, 0]].
    # nearest up2 puts 1 on the top-left 2x2 block: B = 1 there, except |4 - 1| = 3 at the bright pixel.
    expected_nearest = torch.tensor([[1, 1, 0, 0], [1, 3, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.float)
    assert torch.allclose(pooling_residual(f, "nearest")[0, 0], expected_nearest)
    # bilinear up2 (align_corners=False) samples source position (i + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25,
    # clamped at the edges, so the weight of source cell 0 along each axis is w = [1, 0.75, 0.25, 0]
    # and up2 = 1 * w[r] * w[c].
    w = [1.0, 0.75, 0.25, 0.0]
    expected = torch.tensor([[w[r] * w[c] for c in range(4)] for r in range(4)])
    expected[1, 1] = v - 0.75 * 0.75  # 4 - 0.5625 = 3.4375
    assert torch.allclose(pooling_residual(f, "bilinear")[0, 0], expected)
    assert math.isclose(pooling_residual(f, "bilinear")[0, 0, 1, 1].item(), 3.4375)


@pytest.mark.parametrize("shape", [(5, 7), (9, 4), (3, 3)])
def test_pooling_residual_odd_sizes_align(shape: tuple) -> None:
    h, w = shape
    blocks = torch.randn(1, 2, (h + 1) // 2, (w + 1) // 2)
    f = blocks.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)[..., :h, :w]
    assert pooling_residual(f, "bilinear").shape == f.shape
    # the last, partial row/column is pooled over the pixels it has, so a block-constant map still gives B = 0
    assert torch.allclose(pooling_residual(f, "nearest"), torch.zeros_like(f), atol=1e-6)


def test_ecm_output_matches_backbone_resolution_and_channels() -> None:
    ecm = EdgeConservativeModule([8, 12, 16])
    maps = [torch.randn(2, 8, 49, 38), torch.randn(2, 12, 25, 19), torch.randn(2, 16, 13, 10)]
    assert ecm(maps).shape == (2, 16, 7, 5)
    assert ecm.stages[0].compress is None and ecm.stages[1].compress.conv.in_channels == 8 + 12
    with pytest.raises(ValueError, match="3 stages but got 2"):
        ecm(maps[:2])


def test_transition_returns_pre_pool_map_without_state() -> None:
    t = Transition(10, 5)
    x = torch.randn(2, 10, 9, 8)
    pooled, pre_pool = t(x)
    assert pre_pool.shape == (2, 5, 9, 8) and pooled.shape == (2, 5, 5, 4)
    assert torch.allclose(pooled[..., :4, :], F.avg_pool2d(pre_pool[..., :8, :], 2))
    assert not any(isinstance(v, torch.Tensor) for v in vars(t).values())


# --- Rense blocks and loss ------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", BLOCK_VARIANTS)
def test_rense_block_channel_bookkeeping(variant: str) -> None:
    block = RenseBlock(10, num_layers=4, growth_rate=6, variant=variant)
    x = torch.randn(2, 10, 12, 12)
    out = block(x)
    assert out.shape == (2, 10 + 4 * 6, 12, 12) and block.out_chs == 34
    assert (block.shortcut is not None) == (variant == "dense_residual")
    if variant != "dense_residual":  # concatenation keeps the input channels untouched
        assert torch.equal(out[:, :10], x)
    else:
        assert (out >= 0).all()  # ReLU after the added shortcut


def test_model_block_variant_is_used() -> None:
    model = RenseNet(block="residual_dense")
    assert type(model.stages[0].block.layers[0]).__name__ == "ResidualUnit"


def test_loss_combines_heads_with_prototype_weights() -> None:
    target = torch.tensor([0])
    zeros = torch.zeros(1, 2)  # CE = ln 2
    favour = torch.tensor([[math.log(3.0), 0.0]])  # p(0) = 3/4, CE = ln(4/3)
    against = torch.tensor([[0.0, math.log(3.0)]])  # p(0) = 1/4, CE = ln 4
    out = RenseNetOutput(fused=against, backbone=zeros, ecm=favour)
    expected = 1.0 * math.log(2) + 0.3 * math.log(4 / 3) + 0.3 * math.log(4)
    assert math.isclose(RenseNetLoss()(out, target).item(), expected, rel_tol=1e-6)
    weighted = RenseNetLoss(backbone=0.0, ecm=1.0, fused=2.0)(out, target).item()
    assert math.isclose(weighted, math.log(4 / 3) + 2 * math.log(4), rel_tol=1e-6)
    # one head only (ECM off, or any timm model's logits): plain cross-entropy
    assert math.isclose(RenseNetLoss()(RenseNetOutput(against, against, None), target).item(), math.log(4), rel_tol=1e-6)
    assert math.isclose(RenseNetLoss()(favour, target).item(), math.log(4 / 3), rel_tol=1e-6)


@pytest.mark.parametrize("name", ["ecm_resnet18", "ecm_densenet121"])
def test_ecm_attached_to_timm_backbones(name: str) -> None:
    """The unchanged timm network plus ECM, fusion and three heads: trains with RenseNetLoss at any size."""
    model = timm.create_model(name, num_classes=2, in_chans=1)
    plain = timm.create_model(name.removeprefix("ecm_"), num_classes=2, in_chans=1, features_only=True)
    assert sum(p.numel() for p in model.body.parameters()) == sum(p.numel() for p in plain.parameters())
    assert max(s.out_chs for s in model.ecm.stages) <= 128
    out = model.forward_heads(torch.randn(2, 1, 48, 48))
    RenseNetLoss()(out, torch.tensor([0, 1])).backward()
    assert all(p.grad is not None for p in model.ecm.parameters()) and model.ecm_head.fc.weight.grad is not None
    model.eval()
    assert model(torch.randn(1, 1, 97, 75)).shape == (1, 2)  # DenseNet floors odd sizes; the ECM is matched to it
    assert model.default_cam_layers == ["fusion"]


@pytest.mark.parametrize("name", ["rensenet_s", "ecm_resnet18"])
def test_fused_bn_and_channels_last_keep_the_outputs(name: str) -> None:
    from rensenet.models import fuse_conv_bn, optimize_for_inference

    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=2, in_chans=1)
    with torch.no_grad():  # running statistics far from the (0, 1) defaults, so folding them really matters
        for _ in range(3):
            model(torch.randn(8, 1, 48, 48) * 3 + 2)
    with pytest.raises(ValueError, match="needs model.eval"):
        fuse_conv_bn(model)
    model.eval()
    x = torch.randn(4, 1, 48, 48)
    with torch.no_grad():
        ref = model(x)
        fast = optimize_for_inference(copy.deepcopy(model))
        out = fast(x.contiguous(memory_format=torch.channels_last))
    n_norms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    n_left = sum(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert n_left < n_norms and (n_left == 0) == name.startswith("rensenet")  # timm's own layers are left alone
    assert torch.allclose(out, ref, atol=1e-5) and not torch.equal(out, ref)
    assert "ecm.stages.0.conv2" in dict(fast.named_modules())  # CAM target layers keep their names


@pytest.mark.parametrize("name", MODELS)
def test_contract_window_in_context_is_the_dense_map(name: str) -> None:
    """A window seen with one final cell of context (what ``train --context`` optimises) is the dense map's value
    for that window: two code paths, one quantity. The context reaches the output; only the window is pooled."""
    from rensenet.base.predict import tiled_window_logits
    from rensenet.models import WindowInContext
    from rensenet.models.dense import dense_window_logits, reduction

    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=2, in_chans=1).eval()
    r = reduction(model)  # 16 for RenseNet, 32 for the ECM nets
    x = torch.randn(2, 1, 5 * r, 5 * r, requires_grad=True)
    out = WindowInContext(model, r)(x)
    with torch.no_grad():
        dense = dense_window_logits(model, x, window=3 * r, stride=r)  # windows at 0, r and 2r px
        assert dense.shape == (2, 2, 3, 3) and torch.allclose(out, dense[:, :, 1, 1], atol=1e-5)
        assert not torch.allclose(out, model(x[..., r:4 * r, r:4 * r]), atol=1e-3)  # the context changes the score
        one = x[..., r:4 * r, r:4 * r]  # a single window: with its context of black, dense is its tile exactly
        fill = torch.tensor([-1.5])
        tile = tiled_window_logits(WindowInContext(model, r), one, window=3 * r, stride=r, device=torch.device("cpu"),
                                   context=r, fill=fill)
        padded = dense_window_logits(model, one, window=3 * r, stride=r, context=r, fill=fill)
        assert padded.shape == tile.shape == (2, 2, 1, 1) and torch.allclose(padded, tile, atol=1e-5)
        assert not torch.allclose(dense_window_logits(model, one, window=3 * r, stride=r, context=r), tile, atol=1e-3)
    out[:, 1].sum().backward()
    assert x.grad[..., : r // 2, :].abs().sum() > 0  # a context pixel moves it
    heads = WindowInContext(model, 0, heads=True)(x.detach()[..., :3 * r, :3 * r])
    ref = model.forward_heads(x.detach()[..., :3 * r, :3 * r])
    assert all(torch.equal(a, b) for a, b in zip(heads, ref) if a is not None)
    with pytest.raises(ValueError, match=f"multiple of the model's reduction {r}"):
        WindowInContext(model, r // 2)
