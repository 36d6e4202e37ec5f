"""The embedded synthetic set: deterministic, GTZAN-shaped, generated once and cached."""
import numpy as np
import pytest
import soundfile as sf
from torchaudio.datasets.gtzan import gtzan_genres

from genre_vit.data.synthetic import STYLES, SyntheticGenres, render_track, track_style


@pytest.mark.parametrize("genre", list(STYLES))
def test_tracks_are_deterministic_bounded_and_not_silent(genre):
    a = render_track(genre, seed=1, index=0, sample_rate=22050, clip_seconds=3)
    assert a.shape == (66150,) and a.dtype == np.float32
    assert np.array_equal(a, render_track(genre, seed=1, index=0, sample_rate=22050, clip_seconds=3))
    assert 0.05 < np.abs(a).max() <= 1.0 and a.std() > 0.005
    assert not np.array_equal(a, render_track(genre, seed=1, index=1, sample_rate=22050, clip_seconds=3))


def test_average_spectra_of_two_genres_overlap_across_tracks():
    """No genre owns a spectrum: per-track EQ and loudness vary more than genre averages differ."""
    def band_energies(genre, index):
        a = render_track(genre, seed=0, index=index, sample_rate=22050, clip_seconds=4)
        power = np.abs(np.fft.rfft(a)) ** 2
        return np.log10(np.array([b.sum() for b in np.array_split(power, 8)]) + 1e-9)
    rock = np.stack([band_energies("rock", i) for i in range(6)])
    metal = np.stack([band_energies("metal", i) for i in range(6)])
    # In most bands the two genres' per-track ranges overlap.
    overlaps = (rock.max(0) > metal.min(0)) & (metal.max(0) > rock.min(0))
    assert overlaps.sum() >= 5


def test_generated_once_then_reused(tmp_path, monkeypatch):
    gen = SyntheticGenres(root=str(tmp_path), tracks_per_genre=2, seed=5, sample_rate=8000, clip_seconds=2, workers=1)
    tracks = gen.tracks()
    assert len(tracks) == 20 and tracks.classes == list(gtzan_genres)
    assert tracks.paths[0].endswith("blues/blues.00000.wav")
    audio, rate = sf.read(tracks.paths[0])
    assert rate == 8000 and audio.shape == (16000,)
    monkeypatch.setattr("genre_vit.data.synthetic._write_track", lambda job: pytest.fail("regenerated"))
    assert gen.tracks() == tracks


def test_at_a_low_sample_rate_notes_above_its_band_are_rests_not_nan():
    a = render_track("pop", seed=1234, index=37, sample_rate=8000, clip_seconds=30)  # a note above 3.6 kHz
    assert np.isfinite(a).all() and a.std() > 0.005


def test_a_set_folder_left_without_its_settings_is_generated_again(tmp_path):
    gen = SyntheticGenres(root=str(tmp_path), tracks_per_genre=1, seed=5, sample_rate=8000, clip_seconds=1, workers=1)
    (gen.folder() / "blues").mkdir(parents=True)  # e.g. what an interrupted `rm -rf` of the cache left
    assert len(gen.tracks()) == 10 and (gen.folder() / "settings.json").exists()


def test_changed_settings_make_a_new_set(tmp_path):
    a = SyntheticGenres(root=str(tmp_path), tracks_per_genre=1, seed=5, sample_rate=8000, clip_seconds=1, workers=1)
    b = SyntheticGenres(root=str(tmp_path), tracks_per_genre=1, seed=6, sample_rate=8000, clip_seconds=1, workers=1)
    assert a.folder() != b.folder() and a.ensure() != b.ensure()
    assert not list(tmp_path.glob(".tmp-*"))


def test_some_tracks_borrow_parts_from_neighbouring_genres():
    rng = np.random.default_rng(0)
    styles = [track_style("rock", rng) for _ in range(200)]
    pure = sum(s == STYLES["rock"] for s in styles)
    assert 40 < pure < 100  # 0.8 ** 5 = 33% keep every part of their own genre
    assert any(s.drive == STYLES["metal"].drive for s in styles)
