"""The CNN reference maps (B, F, T) segments of any large-enough size to (B, classes) logits."""
import pytest
import torch
import torch.nn.functional as F

from genre_vit.models.cnn import ConvBlock, PatchStem, SpectrogramCNN, downsampling

CHANNELS = [32, 64, 128, 128]  # four blocks, a few hundred thousand parameters


def make_cnn(img_size=(128, 32), **overrides) -> SpectrogramCNN:
    return SpectrogramCNN(**{"img_size": list(img_size), "num_classes": 10, "channels": CHANNELS, "dropout": 0.3,
                             **overrides})


@pytest.mark.parametrize("size", [(128, 32), (128, 128), (129, 512)], ids=["stft-resized", "mel", "stft-full"])
def test_output_shape_for_the_feature_images(size):
    net = make_cnn(size).eval()
    assert net(torch.randn(2, *size)).shape == (2, 10)
    assert net(torch.randn(2, 1, *size)).shape == (2, 10)  # a channel axis is accepted too


def test_feature_maps_halve_once_per_block():
    assert make_cnn().forward_features(torch.randn(1, 128, 32)).shape == (1, 128, 8, 2)


def test_default_size_is_a_few_hundred_thousand_parameters():
    count = sum(p.numel() for p in make_cnn().parameters())
    assert 100_000 <= count <= 500_000, count


@pytest.mark.parametrize("size", [(8, 32), (128, 15)])
def test_too_small_input_is_refused(size):
    with pytest.raises(ValueError, match=r"too small for these blocks: it must be at least \[16, 16\]"):
        make_cnn(size)
    with pytest.raises(ValueError, match="too small"):
        make_cnn()(torch.randn(1, *size))


def test_a_patch_stem_replaces_the_first_block_and_divides_by_its_patch():
    net = make_cnn((128, 128), stem_patch=[4, 2])
    assert isinstance(net.features[0], PatchStem) and len(net.features) == len(CHANNELS)
    assert net.forward_features(torch.randn(2, 128, 128)).shape == (2, CHANNELS[-1], 4, 8)  # 128 / (4 * 2**3), 128 / (2 * 2**3)
    assert downsampling(CHANNELS, [4, 2]) == (32, 16) and downsampling(CHANNELS, None) == (16, 16)
    with pytest.raises(ValueError, match=r"at least \[32, 16\]"):
        make_cnn((16, 128), stem_patch=[4, 2])


def test_the_network_runs_channels_last_and_its_layout_does_not_change_the_result():
    net = make_cnn((64, 64), stem_patch=[2, 2]).eval()
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in net.parameters() if p.dim() == 4)
    x = torch.randn(3, 64, 64)
    expected = net.head(net.features.to(memory_format=torch.contiguous_format)(x.unsqueeze(1)).mean(dim=(-2, -1)))
    torch.testing.assert_close(net(x), expected, rtol=1e-4, atol=1e-5)


def test_a_block_pools_right_after_its_convolution_so_batch_norm_and_relu_see_a_quarter_of_the_values():
    torch.manual_seed(0)
    block = ConvBlock(3, 8).train()
    conv, pool, norm, relu = block
    assert isinstance(pool, torch.nn.MaxPool2d) and isinstance(norm, torch.nn.BatchNorm2d)
    x = torch.randn(4, 3, 16, 12)
    pooled = pool(conv(x))
    assert pooled.shape == (4, 8, 8, 6)
    out = block(x)
    torch.testing.assert_close(out, F.relu(F.batch_norm(pooled, None, None, norm.weight, norm.bias, training=True)))
    assert (out >= 0).all()


def test_empty_channels_are_refused():
    with pytest.raises(ValueError, match="channels must be a non-empty list"):
        make_cnn(channels=[])


def test_one_optimisation_step_reduces_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    net = make_cnn((32, 32), channels=[8, 16], dropout=0.0)
    x, y = torch.randn(8, 32, 32), torch.arange(8) % 10
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    before = F.cross_entropy(net(x), y)
    before.backward()
    optimizer.step()
    assert F.cross_entropy(net(x), y) < before


def test_time_pooling_keeps_which_band_a_pattern_is_in():
    net = make_cnn((128, 32), pool="time").eval()
    maps = torch.zeros(1, CHANNELS[-1], 8, 2)
    low, high = maps.clone(), maps.clone()
    low[:, :, 0], high[:, :, 7] = 1.0, 1.0  # the same pattern in the lowest or the highest row
    assert torch.equal(make_cnn(pool="mean").pooled(low), make_cnn(pool="mean").pooled(high))  # mean: one place
    assert net.pooled(low).shape == (1, CHANNELS[-1] * 8) and not torch.equal(net.pooled(low), net.pooled(high))
    assert net.head[-1].in_features == CHANNELS[-1] * 8


def test_time_stats_pooling_reads_each_rows_mean_and_std_over_time():
    net = make_cnn((128, 32), pool="time_stats").eval()
    maps = torch.randn(2, CHANNELS[-1], 8, 5)
    expected = torch.cat([maps.mean(-1), maps.std(-1, correction=0)], dim=1).flatten(1)
    torch.testing.assert_close(net.pooled(maps), expected)
    assert net(torch.randn(2, 128, 32)).shape == (2, 10) and net(torch.randn(2, 128, 96)).shape == (2, 10)  # any length


def test_pools_that_keep_rows_refuse_another_number_of_rows_and_unknown_pools_are_refused():
    with pytest.raises(ValueError, match=r"the head expects 8 rows of maps \(inputs of 128 rows\), got 4"):
        make_cnn((128, 32), pool="time")(torch.randn(1, 64, 32))
    with pytest.raises(ValueError, match=r"pool 'max' is not one of \['mean', 'time', 'time_stats'\]"):
        make_cnn(pool="max")
