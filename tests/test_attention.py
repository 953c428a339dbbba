"""The attention blocks of SPEC §2: shapes, locality by perturbation, options, and the math itself."""

import math

import pytest
import torch

from dimattn.agents.attention import AGENTS, DimensionalAttention, attention_weights, build_attention
from dimattn.errors import DimattnError

ATTENTION = [a for a in AGENTS if a != "NA"]


def _block(kind, **kw):
    torch.manual_seed(0)
    return build_attention(kind, channels=16, **kw).eval()


@pytest.mark.parametrize("kind", AGENTS)
@pytest.mark.parametrize("shape", [(2, 16, 20, 20), (3, 16, 7, 11), (1, 16, 13, 5)])
def test_shape_is_preserved(kind, shape):
    x = torch.randn(shape)
    assert _block(kind)(x).shape == shape


def test_agents_and_projections():
    assert AGENTS == ("NA", "SWA", "CWRA", "CWCA", "CWRCA")
    for kind in ATTENTION:
        block = _block(kind)
        for name in ("query", "key", "value"):
            conv = getattr(block, name)
            assert isinstance(conv, torch.nn.Conv2d) and conv.kernel_size == (1, 1) and conv.bias is not None
            assert conv.in_channels == conv.out_channels == 16


def test_na_is_identity():
    x = torch.randn(2, 16, 20, 20)
    assert torch.equal(_block("NA")(x), x)


def _changed(kind, y, x, **kw):
    """Map (H, W) of output positions changed by perturbing input position (y, x) (all channels)."""
    block = _block(kind, **kw)
    torch.manual_seed(1)
    h = torch.randn(1, 16, 9, 12)
    g = h.clone()
    g[0, :, y, x] += 3.0
    with torch.no_grad():
        return (block(g) - block(h)).abs().amax(dim=1)[0] > 1e-6  # (H, W)


def test_cwca_mixes_only_along_rows():
    changed = _changed("CWCA", 4, 5)
    assert changed[4].all()  # the whole row y=4 sees the change
    changed[4] = False
    assert not changed.any()  # no other row does


def test_cwra_mixes_only_along_columns():
    changed = _changed("CWRA", 4, 5)
    assert changed[:, 5].all()
    changed[:, 5] = False
    assert not changed.any()


def test_cwrca_mixes_along_the_cross():
    changed = _changed("CWRCA", 4, 5)
    assert changed[4].all() and changed[:, 5].all()
    changed[4] = False
    changed[:, 5] = False
    assert not changed.any()


def test_swa_mixes_everything():
    # rows attend to rows within a channel, and the 1×1 projections mix channels: every position moves
    assert _changed("SWA", 4, 5).all()


@pytest.mark.parametrize("kind", ATTENTION)
def test_locality_holds_without_softmax(kind):
    plain = _changed(kind, 2, 3, norm_softmax=False)
    soft = _changed(kind, 2, 3)
    assert torch.equal(plain, soft)


def _qkv(block, h):
    return block.query(h), block.key(h), block.value(h)


def test_swa_matches_the_formula():
    block, h = _block("SWA"), torch.randn(2, 16, 6, 5)
    q, k, v = _qkv(block, h)  # (N, C, H, W)
    att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(5), dim=-1) @ v  # (N, C, H, H) @ (N, C, H, W)
    torch.testing.assert_close(block(h), att + h)


def test_cwra_cwca_cwrca_match_the_formula():
    h = torch.randn(2, 16, 6, 5)
    block = _block("CWRCA")
    q, k, v = _qkv(block, h)
    # CWRA: per column x, positions y attend over channel vectors: (N, W, H, C)
    qc, kc, vc = (t.permute(0, 3, 2, 1) for t in (q, k, v))
    col = (torch.softmax(qc @ kc.transpose(-1, -2) / 4.0, -1) @ vc).permute(0, 3, 2, 1)
    # CWCA: per row y, positions x attend: (N, H, W, C)
    qr, kr, vr = (t.permute(0, 2, 3, 1) for t in (q, k, v))
    row = (torch.softmax(qr @ kr.transpose(-1, -2) / 4.0, -1) @ vr).permute(0, 3, 1, 2)
    torch.testing.assert_close(block(h), col + row + h)
    for kind, att in (("CWRA", col), ("CWCA", row)):
        single = _block(kind)
        single.load_state_dict(block.state_dict())
        torch.testing.assert_close(single(h), att + h)


def test_norm_softmax_false_is_plain_dot_product():
    block, h = _block("CWCA", norm_softmax=False), torch.randn(1, 16, 4, 6)
    q, k, v = (t.permute(0, 2, 3, 1) for t in _qkv(block, h))
    expected = ((q @ k.transpose(-1, -2)) @ v).permute(0, 3, 1, 2) + h
    torch.testing.assert_close(block(h), expected)


def test_ada_attn_variants():
    h = torch.randn(2, 16, 5, 5)
    plain = _block("CWCA")
    att = plain.attention(h)
    alpha, beta, both = (_block("CWCA", ada_attn=a) for a in ("alpha", "beta", "alpha_beta"))
    for b in (alpha, beta, both):
        b.load_state_dict(plain.state_dict(), strict=False)
    assert alpha.alpha.item() == 0.0 and beta.beta.item() == 1.0
    torch.testing.assert_close(alpha(h), h)  # alpha starts at 0: the block starts as the identity
    torch.testing.assert_close(beta(h), plain(h))  # beta starts at 1: the plain residual
    with torch.no_grad():
        both.alpha.fill_(0.5)
        both.beta.fill_(2.0)
    torch.testing.assert_close(both(h), 0.5 * att + 2.0 * h)
    assert not hasattr(plain, "alpha") and not hasattr(plain, "beta")
    # both parameters are learnable
    both(h).sum().backward()
    assert both.alpha.grad is not None and both.beta.grad is not None


def test_attention_weights_are_row_stochastic():
    h = torch.randn(2, 16, 6, 5)
    w = attention_weights(_block("CWRCA"), h)
    assert w["columns"].shape == (2, 5, 6, 6) and w["row_positions"].shape == (2, 6, 5, 5)
    for m in w.values():
        torch.testing.assert_close(m.sum(-1), torch.ones(m.shape[:-1]))
    assert attention_weights(_block("SWA"), h)["rows"].shape == (2, 16, 6, 6)
    assert attention_weights(_block("NA"), h) == {}


@pytest.mark.parametrize("bad", [dict(kind="XYZ"), dict(kind="CWCA", ada_attn="gamma")])
def test_bad_options_are_one_line_errors(bad):
    with pytest.raises(DimattnError) as err:
        build_attention(**bad)
    assert "\n" not in str(err.value)


def test_lower_case_kind_is_accepted():
    assert isinstance(build_attention("cwca"), DimensionalAttention)
