"""The ViT maps (B, F, T) segments to (B, classes) logits for any patch shape that tiles the image."""
import pytest
import torch

from genre_vit.models.vit import PatchEmbed, SpectrogramViT
from genre_vit.optim import param_groups


def make_vit(**overrides) -> SpectrogramViT:
    kwargs = dict(img_size=[128, 32], patch_size=[16, 4], num_classes=10, embed_dim=128, depth=2, num_heads=4,
                  mlp_ratio=4.0, dropout=0.0, head_hidden=64, pool="mean")
    return SpectrogramViT(**{**kwargs, **overrides})


@pytest.mark.parametrize("patch,tokens", [([16, 4], 64), ([8, 8], 64), ([32, 8], 16), ([128, 1], 32), ([2, 32], 64)])
@pytest.mark.parametrize("embed_dim", [32, 128])
def test_output_shape_for_patch_shapes_and_dims(patch, tokens, embed_dim):
    net = make_vit(patch_size=patch, embed_dim=embed_dim, num_heads=4)
    assert net.patch_embed.num_patches == tokens
    assert net.pos_embed.shape == (1, tokens, embed_dim)
    assert net(torch.randn(3, 128, 32)).shape == (3, 10)
    assert net.forward_features(torch.randn(2, 128, 32)).shape == (2, tokens, embed_dim)


def test_class_token_pooling_adds_one_token():
    net = make_vit(pool="cls")
    assert net.pos_embed.shape[1] == 65 and net(torch.randn(2, 128, 32)).shape == (2, 10)


def test_mean_pooling_is_permutation_invariant_in_the_head():
    net = make_vit().eval()
    tokens = torch.randn(2, 64, 128)
    assert torch.allclose(net.forward_head(tokens), net.forward_head(tokens.flip(1)), atol=1e-5)


def test_default_model_size():
    assert sum(p.numel() for p in make_vit(depth=8, head_hidden=128).parameters()) == 1_620_746


def test_patch_that_does_not_tile_is_refused():
    with pytest.raises(ValueError, match=r"patch_size \[16, 5\] does not tile img_size \[128, 32\]"):
        PatchEmbed([128, 32], [16, 5], 8)


def test_wrong_input_size_is_refused():
    with pytest.raises(ValueError, match="expected input of size"):
        make_vit()(torch.randn(1, 64, 32))


def test_weight_decay_skips_norms_biases_and_embeddings():
    net = make_vit()
    decay, no_decay = param_groups(net)
    assert "weight_decay" not in decay and no_decay["weight_decay"] == 0.0  # the optimizer's own decay applies
    assert all(p.dim() >= 2 for p in decay["params"])
    assert any(p is net.pos_embed for p in no_decay["params"])
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == sum(p.numel() for p in net.parameters())
