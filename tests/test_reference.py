"""The classical reference fused into the network's track scores: the baseline's classifier, its
confidence chosen on the training tracks alone, carried by the checkpoint into predict."""
import json

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from genre_vit.checkpoints import CheckpointError
from genre_vit.inference import Predictor
from genre_vit.metrics import TrackVotes, track_labels
from genre_vit.recipe import Recipe, build_features
from genre_vit.reference import StatisticsReference, fused_scores
from genre_vit.statistics import track_statistics
from tests.conftest import TINY, compose_config, train_in_process
from tests.test_baseline import band_energy_split


def fitted(split, **settings) -> StatisticsReference:
    reference = StatisticsReference(rows=split.segments.shape[1], num_classes=3, **settings)
    reference.fit(split.segments, split.labels, split.tracks)
    return reference


def statistics_of(split) -> torch.Tensor:
    return track_statistics(split.segments, split.tracks)[1]


def test_an_unfitted_reference_changes_no_prediction():
    reference = StatisticsReference(rows=16, num_classes=3)
    network = torch.randn(5, 3)
    fused = fused_scores(network, reference, torch.randn(5, 64))
    assert torch.equal(fused.argmax(-1), network.argmax(-1))
    assert torch.allclose(reference(torch.randn(5, 64)).exp(), torch.full((5, 3), 1 / 3))


@pytest.mark.parametrize("classes", [3, 2])
def test_the_reference_is_the_baseline_classifier(classes):
    train = band_energy_split(8, 0)
    keep = train.labels < classes
    train.segments, train.labels, train.tracks = train.segments[keep], train.labels[keep], train.tracks[keep]
    reference = fitted(train)
    baseline = instantiate(compose_config("experiment=baseline_logreg").baseline)
    baseline.fit(statistics_of(train).double().numpy(), track_labels(train.labels, train.tracks).numpy())
    val = band_energy_split(4, 1, 100)
    expected = torch.as_tensor(baseline.predict_proba(statistics_of(val).double().numpy())).float()
    assert torch.allclose(reference.logits(statistics_of(val))[:, :classes].softmax(-1), expected, atol=1e-5)


def test_its_sharpness_is_cross_validated_on_the_training_tracks():
    informative, shuffled = band_energy_split(8, 0), band_energy_split(8, 0)
    per_track = shuffled.labels[::4]  # 4 segments a track: each track takes another's label
    shuffled.labels = per_track[torch.randperm(24, generator=torch.Generator().manual_seed(0))].repeat_interleave(4)
    assert fitted(informative).sharpness > 0.5
    unrelated = fitted(shuffled)
    assert unrelated.sharpness < 0.1  # it cannot tell the classes apart, so it flattens itself
    network = torch.tensor([[0.0, 0.2, 0.0]]).expand(24, 3)  # a network that prefers class 1, weakly
    assert (fused_scores(network, unrelated, statistics_of(informative)).argmax(-1) == 1).all()


def test_takes_of_one_recording_never_score_each_other_in_its_cross_validation():
    """Recordings whose takes share everything but a little noise, and whose class is a coin toss:
    split by take, the cross-validation recognises each recording and trusts the reference;
    split by recording, it finds nothing to trust."""
    generator = torch.Generator().manual_seed(0)
    recordings = torch.arange(20).repeat_interleave(3)  # 20 recordings, 3 takes each, one segment a take
    labels = torch.randint(0, 3, (20,), generator=generator)[recordings]
    looks = torch.randn(20, 32, 1, generator=generator) * 5
    segments = looks[recordings] + torch.randn(60, 32, 16, generator=generator) * 0.1
    tracks = torch.arange(60)

    def sharpness(groups) -> float:
        return StatisticsReference(rows=32, num_classes=3).fit(segments, labels, tracks, groups)

    assert sharpness(None) > 0.5 and sharpness(recordings) < 0.1  # measured: 0.76 and 0.0


def test_strength_scales_the_vote_and_zero_leaves_the_network_alone():
    split = band_energy_split(8, 0)
    full, half, none = (fitted(split, strength=strength) for strength in (1.0, 0.5, 0.0))
    statistics = statistics_of(split)
    assert torch.allclose(half(statistics), 0.5 * full(statistics))
    network = torch.randn(24, 3)
    assert torch.equal(fused_scores(network, none, statistics).argmax(-1), network.argmax(-1))


def test_too_few_tracks_to_cross_validate_give_no_opinion():
    one_each = band_energy_split(1, 0)
    assert fitted(one_each).sharpness == 0


def test_statistics_collected_batch_by_batch_are_those_of_whole_tracks():
    split = band_energy_split(4, 0)
    votes = TrackVotes(statistics=True)
    for batch in torch.randperm(len(split.labels), generator=torch.Generator().manual_seed(0)).split(5):
        votes.update(torch.randn(len(batch), 3), split.labels[batch], split.tracks[batch], split.segments[batch].float())
    _, labels, statistics, _ = votes.compute()
    assert torch.allclose(statistics, statistics_of(split), atol=1e-4)
    assert torch.equal(labels, track_labels(split.labels, split.tracks))


def test_the_default_fuses_the_reference_and_the_earlier_presets_do_not():
    assert compose_config().reference._target_ == "genre_vit.reference.StatisticsReference"
    for experiment in ("paper", "v1_defaults", "mel_specaugment"):
        cfg = compose_config(f"experiment={experiment}")
        assert not cfg.features.end_window  # their windows as measured, before the end window
        assert not cfg.get("reference") and Recipe.from_config(cfg, ["a", "b"]).build_reference() is None


def test_a_checkpoint_without_a_reference_still_loads():
    recipe = Recipe.from_config(compose_config("reference=none"), ["a", "b"]).to_dict()
    del recipe["reference"]  # as checkpoints written before the reference existed
    assert Recipe.from_checkpoint({"genre_vit_recipe": recipe}, "old.ckpt").build_reference() is None


def test_resuming_with_another_reference_setting_is_refused_naming_the_fix(tiny_run, tmp_path, shared_cache):
    refusal = r"reference\._target_: checkpoint .*\(reference=none for one written without a reference\)$"
    with pytest.raises(CheckpointError, match=refusal):
        train_in_process(tmp_path / "run", *TINY, "reference=none", f"paths.cache_dir={shared_cache}",
                         f"ckpt_path={tiny_run / 'checkpoints' / 'last.ckpt'}")


def test_predict_scores_a_track_as_validation_did(tiny_run):
    record = json.loads((tiny_run / "metrics.json").read_text())
    cfg = OmegaConf.load(tiny_run / "config.yaml")
    datamodule = instantiate(cfg.data, features=build_features(cfg.features))
    datamodule.prepare_data()
    datamodule.setup("fit")
    predictor = Predictor.from_checkpoint(tiny_run / "checkpoints" / "last.ckpt")
    assert predictor.reference is not None and predictor.reference.weight.abs().sum() > 0  # fitted and saved
    val = datamodule.val_set
    correct = [int(predictor.track_scores(val.segments[val.tracks == track].float(), 64).argmax())
               == int(val.labels[val.tracks == track][0]) for track in val.tracks.unique()]
    assert sum(correct) / len(correct) == pytest.approx(record["final"]["val/track_acc"], abs=1e-6)
    assert {"val/track_acc_network", "val/track_acc_reference"} <= set(record["final"])
