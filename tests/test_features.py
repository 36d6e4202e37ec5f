"""Features: log-spectrogram -> segments every `segment_step` frames -> resized images."""
import pytest
import torch

from genre_vit.data.features import MelFeatures, Segmenter, SpecAugment, StftFeatures
from genre_vit.module import GenreClassifier
from tests.conftest import compose_config
from tests.tiny_net import BandMeans


def stft(**overrides) -> StftFeatures:
    kwargs = dict(sample_rate=22050, n_fft=256, hop_length=256, window="hann", segment_frames=512, segment_step=256,
                  image_size=[128, 32])
    return StftFeatures(**{**kwargs, **overrides})


def test_thirty_seconds_give_nine_half_overlapping_segments_of_the_report_size():
    segments = stft()(torch.randn(22050 * 30))
    # 661500 samples / hop 256 -> 2585 frames; windows of 512 every 256 -> 9
    assert segments.shape == (9, 128, 32) and segments.dtype == torch.float32


def test_full_resolution_keeps_frequency_bins_and_frames():
    feats = stft(image_size=None)
    assert feats.image_shape == (129, 512)
    assert feats(torch.randn(22050 * 10)).shape[1:] == (129, 512)


def test_segmenter_windows_are_the_spectrogram_columns():
    spec = torch.arange(3 * 10, dtype=torch.float32).reshape(3, 10)
    segments = Segmenter(4, 3)(spec)
    assert segments.shape == (3, 3, 4)
    assert torch.equal(segments[1], spec[:, 3:7]) and torch.equal(segments[2], spec[:, 6:10])


def test_the_end_window_ends_at_the_last_frame_where_two_or_more_frames_are_left_past_the_last_window():
    spec = torch.arange(3 * 12, dtype=torch.float32).reshape(3, 12)
    segments = Segmenter(4, 3, end_window=True)(spec)  # starts 0, 3, 6: frames 10 and 11 in no window
    assert segments.shape == (4, 3, 4) and torch.equal(segments[3], spec[:, 8:12])
    assert Segmenter(4, 3)(spec).shape == (3, 3, 4)  # end_window=False: as checkpoints before it
    assert Segmenter(4, 3, end_window=True)(spec[:, :11]).shape == (3, 3, 4)  # one frame left: a centred STFT's end
    assert Segmenter(4, 3, end_window=True)(spec[:, :10]).shape == (3, 3, 4)  # none left


def test_a_sound_in_a_clips_last_half_second_is_the_window_scored():
    rate, t = 22050, torch.arange(22050 * 5) / 22050
    clip = torch.where(t > 4.6, 0.3 * torch.sin(2 * torch.pi * 440 * t), torch.zeros(()))
    settings = dict(sample_rate=rate, n_fft=1024, hop_length=512, n_mels=64, f_min=0.0, f_max=None, window="hann",
                    segment_frames=64, segment_step=32, image_size=None, sound_within_db=20.0)
    spectrogram = MelFeatures(**settings).spectrogram(clip)  # 216 frames; windows every 32 end at frame 192
    assert MelFeatures(**settings, end_window=True)(clip).shape[0] == 1
    assert torch.equal(MelFeatures(**settings, end_window=True)(clip)[0], spectrogram[:, -64:])
    assert MelFeatures(**settings)(clip).shape[0] == 5  # no window holds the sound: every silent one is scored


def test_too_short_audio_gives_no_segment():
    assert stft()(torch.randn(22050)).shape == (0, 128, 32)


def test_log_power_is_decibels_and_finite_on_silence():
    feats = stft(image_size=None)
    loud, quiet = torch.randn(22050 * 7), torch.zeros(22050 * 7)
    quiet[0] = 1e-3
    diff = feats(loud).mean() - feats(0.1 * loud).mean()
    assert diff == pytest.approx(20.0, abs=0.1)  # 10x amplitude = +20 dB
    assert torch.isfinite(feats(quiet)).all()
    assert (feats(torch.zeros(22050 * 7)) == -100.0).all()  # silence sits on the 1e-10 power floor


def test_top_db_floors_zero_padding_that_many_db_under_the_track_peak():
    wave = torch.zeros(22050 * 7)
    wave[: 22050 * 3] = torch.randn(22050 * 3)  # 3 s of sound, then 4 s of digital silence
    floored = stft(top_db=80.0).spectrogram(wave)
    assert floored.min() == pytest.approx(floored.max() - 80.0)  # the silence sits on the floor
    assert stft().spectrogram(wave).min() == -100.0  # without top_db: the fixed power floor
    assert stft(top_db=80.0).settings["top_db"] == 80.0 and "top_db" not in stft().settings  # earlier caches stay valid


def test_mel_features_have_n_mels_rows():
    feats = MelFeatures(sample_rate=22050, n_fft=1024, hop_length=512, n_mels=64, f_min=0.0, f_max=None, window="hann",
                        segment_frames=128, segment_step=64, image_size=None)
    assert feats(torch.randn(22050 * 6)).shape[1:] == (64, 128)


def test_changing_n_fft_changes_the_settings():
    assert stft().settings != stft(n_fft=512).settings


def test_unknown_window_is_refused_naming_it_and_the_choices():
    with pytest.raises(ValueError, match=r"unknown window 'kaiser': expected one of \['blackman', 'hamming', 'hann'\]"):
        stft(window="kaiser")


def test_segments_of_no_frames_are_refused():
    with pytest.raises(ValueError, match="segment_frames=0 and segment_step=256 must both be >= 1"):
        stft(segment_frames=0)


def test_spec_augment_masks_bands_and_spans_with_the_mean_or_each_rows_silence():
    segments = torch.randn(64, 20, 30)
    segments[:, :, 20:] = -5.0  # the last 10 columns: padding, far under the normalised mean
    for fill, expected in (("mean", torch.zeros(64, 20, 1)), ("min", segments.amin(dim=-1, keepdim=True))):
        torch.manual_seed(0)
        masked = SpecAugment(freq_mask=4, time_mask=6, num_masks=2, fill=fill)(segments)
        changed = masked != segments
        assert changed.any(dim=(1, 2)).float().mean() > 0.9    # nearly every segment has a mask
        assert torch.equal(masked[changed], expected.expand_as(segments)[changed])
    assert torch.equal(masked[:, :, 20:], segments[:, :, 20:])  # min fill: the padding stays silent
    assert torch.equal(SpecAugment(0, 0, 2)(segments), segments)  # no masks, no change


def test_the_mask_fill_reaches_the_training_module_and_checkpoints_before_it_read_as_the_mean():
    augment = compose_config("augment=specaugment", "augment.mask_fill=min").module.augment
    assert augment.mask_fill == "min"
    for settings, fill in ((dict(augment), "min"), ({k: v for k, v in augment.items() if k != "mask_fill"}, "mean")):
        module = GenreClassifier(BandMeans([20, 30], 2), 20, torch.optim.SGD, None, 0.0, ["a", "b"], settings, seed=0)
        assert module.spec_augment.fill == fill and module.hparams.augment == settings


def test_each_micro_batch_and_process_draws_its_own_augmentation_and_one_process_draws_by_step():
    from types import SimpleNamespace

    from genre_vit.module import AUGMENT_SEED_STRIDE

    augment = dict(compose_config("augment=mixup").module.augment)
    module = GenreClassifier(BandMeans([20, 30], 2), 20, torch.optim.SGD, None, 0.0, ["a", "b"], augment, seed=7)

    def masks_drawn(step, batch_idx, accumulate=1, rank=0, world_size=1):
        module._trainer = SimpleNamespace(global_step=step, accumulate_grad_batches=accumulate, global_rank=rank,
                                          world_size=world_size)
        module.on_train_batch_start(None, batch_idx)
        return torch.rand(3)

    # one process without accumulation: step s draws from seed * stride + s, as every run so far did
    assert torch.equal(masks_drawn(5, 0), torch.rand(3, generator=torch.Generator().manual_seed(7 * AUGMENT_SEED_STRIDE + 5)))
    assert torch.equal(masks_drawn(5, 3), masks_drawn(5, 0))  # the draws follow the step, not the batch index
    draws = [masks_drawn(step, batch, accumulate=2, rank=rank, world_size=2)
             for step in range(3) for batch in (2 * step, 2 * step + 1) for rank in (0, 1)]
    assert len({tuple(d.tolist()) for d in draws}) == len(draws)  # 2 micro-batches x 2 processes a step: all differ
    assert torch.equal(masks_drawn(1, 3, accumulate=2, rank=1, world_size=2), draws[7])  # a resume draws them again


def test_under_mixup_train_acc_scores_each_mixed_segment_by_its_larger_part():
    from types import SimpleNamespace

    class LargerPart(torch.nn.Module):  # names the class whose one-hot row is brighter: right on every mix
        def forward(self, x):
            return 100 * x[:, :4].mean(-1)

    augment = {**compose_config("augment=mixup").module.augment, "freq_mask": 0, "time_mask": 0}
    module = GenreClassifier(LargerPart(), 8, torch.optim.SGD, None, 0.1, list("abcd"), augment, seed=0)
    module.log, module._trainer = (lambda *args, **kwargs: None), SimpleNamespace(is_last_batch=False)
    torch.manual_seed(0)
    for step in range(20):
        y = torch.randint(0, 4, (16,))
        x = torch.zeros(16, 8, 4)
        x[torch.arange(16), y] = 1.0
        module.training_step((x, y, torch.arange(16)), step)
    assert module.train_acc.compute() > 0.99  # scored against the first part alone, about 0.5 at mixup_alpha=0.2
