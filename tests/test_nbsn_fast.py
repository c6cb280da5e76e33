"""The full NBSN's inference path (channels-last in eval mode, fp32 head under autocast) computes what
its original forward computed; the original is kept here as the reference."""
import numpy as np
import pytest
import torch

from ssml_stream.models import build_model, load_weights
from ssml_stream.models.features import local_rate, tfi_center, tfp_center


def reference_forward(net, x, inference=True):
    """The NBSN forward as first written (NCHW layout, one dtype throughout); `inference` adds the
    eval-mode brightness anchor."""
    b = x.shape[0]
    subs = torch.cat([x[:, o:o + net.sub_frames] for o in net.offsets], dim=0)
    tfp = torch.cat([tfp_center(subs, 11), tfp_center(subs, 19), tfp_center(subs, 27)], dim=1)
    tfi = tfi_center(subs, net.search, net.fallback)
    extra, scale = [], torch.ones(1)
    if net.normalize:  # light-level normalisation: motion inputs over the local rate, output times it
        scale = local_rate(x.mean(dim=1, keepdim=True))
        subs_scale = scale.repeat(len(net.offsets), 1, 1, 1)
        tfp, tfi, extra = tfp / subs_scale, tfi / subs_scale, [torch.log(subs_scale)]
    motion = net.attention(net.motion(tfp, tfi))
    y = net.sub_unet(torch.cat([subs, motion, *extra], dim=1))
    y = torch.cat([y[i * b:(i + 1) * b] for i in range(len(net.offsets))], dim=1)
    out = net.head(net.fuse_unet(y)) * scale
    if net.anchor_mean and inference:  # eval mode: each image's mean pinned to its window's mean firing rate
        out = out.clamp_min(0)
        out = out * (x.mean(dim=(1, 2, 3)) / out.mean(dim=(1, 2, 3))).view(-1, 1, 1, 1)
    return out


def spikes(shape, p, seed=0):
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < p).float()


def nchw_copy(net):
    """The same weights in a network never switched to eval mode (default NCHW layout)."""
    copy = build_model("nbsn", normalize=net.normalize, anchor_mean=net.anchor_mean)
    copy.load_state_dict(net.state_dict())
    return copy


def test_eval_forward_matches_reference():
    torch.manual_seed(0)
    net = build_model("nbsn").eval()
    x = spikes((2, 41, 30, 44), 0.2)  # sizes not a multiple of 4: the U-Nets pad and crop
    with torch.no_grad():
        want = reference_forward(nchw_copy(net), x)
        got = net(x)
    assert got.shape == (2, 1, 30, 44) and got.dtype == torch.float32
    assert (got - want).abs().max().item() <= 1e-4


def test_shipped_weights_load_and_match_reference():
    net, meta = load_weights("ssml-full")
    assert meta["arch"] == "nbsn"
    x = spikes((1, 41, 32, 48), 0.3, seed=1)
    with torch.no_grad():
        want = reference_forward(nchw_copy(net), x)
        got = net(x)
    assert (got - want).abs().max().item() <= 1e-4


def test_eval_switches_layout_and_activations_not_weights():
    torch.manual_seed(0)
    net = build_model("nbsn")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    convs = [p for p in net.parameters() if p.dim() == 4]
    activations = [m for m in net.modules() if isinstance(m, torch.nn.LeakyReLU)]
    net.eval()
    assert all(a.inplace for a in activations)
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    # every conv with a spatial kernel and several input channels changes layout (others look alike)
    assert all(not p.is_contiguous() for p in convs if p.shape[1] > 1 and p.shape[2] > 1)
    net.train()
    assert all(p.is_contiguous() for p in convs) and not any(a.inplace for a in activations)
    after = net.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], v) for k, v in before.items())


def test_autocast_inference_keeps_the_head_in_fp32():
    """Under bf16 autocast the output is fp32 and closer to the fp32 reference than an all-bf16 pass."""
    torch.manual_seed(0)
    net = build_model("nbsn").eval()
    reference_net = nchw_copy(net)
    x = spikes((1, 41, 36, 52), 0.25, seed=2)
    with torch.no_grad():
        want = reference_forward(reference_net, x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = net(x)
            all_bf16 = reference_forward(reference_net, x)
    assert got.dtype == torch.float32  # (the reference's bf16 output is promoted by the fp32 light scale)
    err, err_all_bf16 = (got - want).abs().max().item(), (all_bf16.float() - want).abs().max().item()
    assert err < err_all_bf16, (err, err_all_bf16)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_gradients_match_reference(mode):
    """Either layout, the forward and its gradients are the reference's (training uses train mode)."""
    torch.manual_seed(0)
    net = build_model("nbsn").train(mode == "train")
    x = spikes((1, 41, 16, 24), 0.3, seed=3)
    y = net(x)
    y.square().mean().backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)
    copy = nchw_copy(net)
    reference_forward(copy, x, inference=mode == "eval").square().mean().backward()
    worst = max((g - p.grad).abs().max().item() for g, p in zip(grads, copy.parameters()))
    assert worst <= 1e-5
