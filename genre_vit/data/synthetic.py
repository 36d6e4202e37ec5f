"""The embedded synthetic genre data set: GTZAN-shaped audio generated from a seed.

Each genre is a *style*: ranges of tempo, a drum pattern, chord progressions and voicings, a bass
line, an instrument timbre, distortion, noise and tonality. Every track draws its own values from
those ranges (key, tempo, timbre, mix, EQ tilt, loudness), and neighbouring genres share parts of
their ranges (rock/metal distortion, disco/pop tempo and chords, blues/jazz swing), so that only the
combination of rhythm, harmony and timbre over several seconds identifies a genre. A track also
borrows each part (rhythm, harmony, bass, timbre, effects) from a neighbouring genre with
probability 0.2, so some tracks are ambiguous, as real ones are.

The tracks are written once as 16-bit WAV files in a GTZAN layout (`<genre>/<genre>.000NN.wav`)
under a folder named by a hash of the settings, then read like any other class-per-folder set.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf
from torchaudio.datasets.gtzan import gtzan_genres

from genre_vit.data.locks import build_lock
from genre_vit.data.sources import DataError, TrackList, list_class_folders
from genre_vit.files import apply_umask

log = logging.getLogger(__name__)

# Bump when the generator's output changes, so that cached sets are rebuilt.
GENERATOR_VERSION = 2

# Scales as semitone offsets from the tonic.
MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
DORIAN = (0, 2, 3, 5, 7, 9, 10)
BLUES = (0, 3, 5, 6, 7, 10)
PHRYGIAN = (0, 1, 3, 5, 7, 8, 10)

# Chord shapes as semitone offsets from the chord root.
CHORDS = {
    "triad": (0, 4, 7), "minor": (0, 3, 7), "dom7": (0, 4, 7, 10), "min7": (0, 3, 7, 10),
    "maj7": (0, 4, 7, 11), "min9": (0, 3, 7, 10, 14), "power": (0, 7, 12),
}


@dataclass(frozen=True)
class Style:
    """The ranges one genre draws its tracks from. Patterns are 16 steps (sixteenth notes) of hit
    probabilities; `comp` lists (step, length in steps) of chord hits in a bar."""

    tempo: tuple[float, float]
    swing: tuple[float, float]
    kick: tuple[float, ...]
    snare: tuple[float, ...]
    hat: tuple[float, ...]
    hat_decay: tuple[float, float]
    scale: tuple[int, ...]
    progressions: tuple[tuple[int, ...], ...]
    chord: tuple[str, ...]
    comp: tuple[tuple[int, int], ...]
    bass: str
    lead_density: tuple[float, float]
    partials: tuple[int, int]
    rolloff: tuple[float, float]
    attack: tuple[float, float]
    decay: tuple[float, float]
    drive: tuple[float, float]
    noise: tuple[float, float]
    drums: tuple[float, float]
    octave: int


def _steps(*on: int, p: float = 1.0, rest: float = 0.0) -> tuple[float, ...]:
    return tuple(p if i in on else rest for i in range(16))


STYLES: dict[str, Style] = {
    "blues": Style(
        tempo=(65, 100), swing=(0.25, 0.4), kick=_steps(0, 8, p=0.9, rest=0.05), snare=_steps(4, 12, p=0.8),
        hat=_steps(0, 4, 8, 12, p=0.8, rest=0.15), hat_decay=(0.05, 0.12), scale=BLUES,
        progressions=((0, 0, 0, 0, 5, 5, 0, 0, 7, 5, 0, 7),), chord=("dom7",), comp=((0, 6), (6, 2), (8, 6), (14, 2)),
        bass="walking", lead_density=(0.2, 0.45), partials=(6, 12), rolloff=(1.0, 1.6), attack=(0.003, 0.01),
        decay=(0.3, 0.7), drive=(1.0, 3.0), noise=(0.002, 0.01), drums=(0.4, 0.7), octave=4,
    ),
    "classical": Style(
        tempo=(55, 110), swing=(0.0, 0.05), kick=_steps(), snare=_steps(), hat=_steps(), hat_decay=(0.05, 0.05),
        scale=MAJOR, progressions=((0, 5, 7, 0), (0, 9, 5, 7), (0, 7, 9, 4, 5, 0, 5, 7)), chord=("triad", "maj7"),
        comp=((0, 16),), bass="long", lead_density=(0.25, 0.6), partials=(8, 16), rolloff=(1.2, 2.2),
        attack=(0.05, 0.25), decay=(1.5, 4.0), drive=(1.0, 1.0), noise=(0.0005, 0.003), drums=(0.0, 0.0), octave=5,
    ),
    "country": Style(
        tempo=(95, 135), swing=(0.0, 0.1), kick=_steps(0, 8, p=0.95), snare=_steps(4, 12, p=0.7, rest=0.02),
        hat=_steps(0, 2, 4, 6, 8, 10, 12, 14, p=0.6), hat_decay=(0.03, 0.07), scale=MAJOR,
        progressions=((0, 5, 7, 0), (0, 0, 5, 7)), chord=("triad",), comp=((2, 2), (6, 2), (10, 2), (14, 2)),
        bass="root_fifth", lead_density=(0.3, 0.6), partials=(8, 14), rolloff=(0.7, 1.2), attack=(0.001, 0.005),
        decay=(0.15, 0.4), drive=(1.0, 1.5), noise=(0.001, 0.005), drums=(0.35, 0.6), octave=4,
    ),
    "disco": Style(
        tempo=(110, 132), swing=(0.0, 0.05), kick=_steps(0, 4, 8, 12), snare=_steps(4, 12, p=0.9),
        hat=_steps(2, 6, 10, 14, p=0.95, rest=0.3), hat_decay=(0.08, 0.2), scale=DORIAN,
        progressions=((0, 5), (0, 3, 5, 3), (9, 2, 7, 0)), chord=("min7", "maj7"), comp=((2, 1), (6, 1), (10, 1), (14, 1)),
        bass="octave", lead_density=(0.15, 0.35), partials=(4, 9), rolloff=(0.8, 1.4), attack=(0.002, 0.01),
        decay=(0.1, 0.3), drive=(1.0, 1.4), noise=(0.001, 0.004), drums=(0.6, 0.9), octave=4,
    ),
    "hiphop": Style(
        tempo=(78, 100), swing=(0.15, 0.3), kick=_steps(0, 7, 10, p=0.85, rest=0.05), snare=_steps(4, 12),
        hat=_steps(0, 2, 4, 6, 8, 10, 12, 14, p=0.9, rest=0.25), hat_decay=(0.02, 0.05), scale=MINOR,
        progressions=((0, 5), (0, 3, 5, 3), (0, 8)), chord=("minor", "min7"), comp=((0, 8), (8, 8)),
        bass="sub", lead_density=(0.05, 0.2), partials=(3, 7), rolloff=(1.4, 2.2), attack=(0.005, 0.02),
        decay=(0.4, 1.0), drive=(1.0, 1.8), noise=(0.006, 0.02), drums=(0.8, 1.0), octave=4,
    ),
    "jazz": Style(
        tempo=(100, 180), swing=(0.3, 0.45), kick=_steps(0, p=0.3, rest=0.05), snare=_steps(6, 14, p=0.25, rest=0.05),
        hat=_steps(0, 4, 6, 8, 12, 14, p=0.9), hat_decay=(0.25, 0.5), scale=DORIAN,
        progressions=((2, 7, 0, 0), (2, 7, 0, 9), (0, 9, 2, 7)), chord=("min7", "dom7", "maj7", "min9"),
        comp=((0, 3), (6, 2), (10, 3)), bass="walking", lead_density=(0.4, 0.8), partials=(4, 8), rolloff=(1.3, 2.0),
        attack=(0.01, 0.03), decay=(0.3, 0.8), drive=(1.0, 1.2), noise=(0.002, 0.008), drums=(0.25, 0.5), octave=4,
    ),
    "metal": Style(
        tempo=(130, 200), swing=(0.0, 0.03), kick=_steps(*range(16), p=0.85, rest=0.0), snare=_steps(4, 12),
        hat=_steps(0, 4, 8, 12, p=0.9, rest=0.3), hat_decay=(0.1, 0.3), scale=PHRYGIAN,
        progressions=((0, 1, 0, 5), (0, 3, 1, 0), (0, 8, 7, 5)), chord=("power",),
        comp=tuple((step, 2) for step in range(0, 16, 2)),
        bass="root8", lead_density=(0.1, 0.4), partials=(8, 14), rolloff=(0.6, 1.0), attack=(0.001, 0.004),
        decay=(0.15, 0.4), drive=(6.0, 14.0), noise=(0.004, 0.015), drums=(0.6, 0.9), octave=3,
    ),
    "pop": Style(
        tempo=(96, 128), swing=(0.0, 0.08), kick=_steps(0, 8, 10, p=0.9, rest=0.05), snare=_steps(4, 12),
        hat=_steps(0, 2, 4, 6, 8, 10, 12, 14, p=0.85), hat_decay=(0.04, 0.1), scale=MAJOR,
        progressions=((0, 7, 9, 5), (9, 5, 0, 7), (0, 5, 9, 7)), chord=("triad", "maj7"), comp=((0, 4), (4, 4), (8, 4), (12, 4)),
        bass="root8", lead_density=(0.3, 0.6), partials=(3, 8), rolloff=(1.0, 1.8), attack=(0.005, 0.03),
        decay=(0.3, 0.8), drive=(1.0, 1.8), noise=(0.001, 0.005), drums=(0.5, 0.8), octave=5,
    ),
    "reggae": Style(
        tempo=(65, 90), swing=(0.05, 0.2), kick=_steps(8, p=0.95), snare=_steps(8, p=0.9, rest=0.03),
        hat=_steps(0, 2, 4, 6, 8, 10, 12, 14, p=0.7), hat_decay=(0.03, 0.08), scale=MAJOR,
        progressions=((0, 5), (0, 7), (9, 5, 0, 7)), chord=("triad", "minor"), comp=((4, 1), (12, 1)),
        bass="reggae", lead_density=(0.05, 0.25), partials=(5, 10), rolloff=(0.9, 1.5), attack=(0.001, 0.005),
        decay=(0.08, 0.2), drive=(1.0, 1.6), noise=(0.002, 0.008), drums=(0.45, 0.7), octave=4,
    ),
    "rock": Style(
        tempo=(105, 150), swing=(0.0, 0.05), kick=_steps(0, 8, 10, p=0.9, rest=0.08), snare=_steps(4, 12),
        hat=_steps(0, 2, 4, 6, 8, 10, 12, 14, p=0.9), hat_decay=(0.06, 0.2), scale=MAJOR,
        progressions=((0, 5, 7, 0), (0, 10, 5, 0), (0, 7, 5, 5)), chord=("power", "triad"), comp=((0, 4), (4, 4), (8, 4), (12, 2), (14, 2)),
        bass="root8", lead_density=(0.2, 0.5), partials=(8, 14), rolloff=(0.7, 1.2), attack=(0.001, 0.006),
        decay=(0.3, 0.7), drive=(2.5, 7.0), noise=(0.003, 0.01), drums=(0.6, 0.85), octave=4,
    ),
}
assert list(STYLES) == list(gtzan_genres), "one style per GTZAN genre, in GTZAN order"

# Genres that share musicians, instruments or history; a track may borrow a part from one of them.
NEIGHBOURS = {
    "blues": ("jazz", "rock", "country"), "classical": ("jazz", "pop"), "country": ("rock", "pop", "blues"),
    "disco": ("pop", "hiphop"), "hiphop": ("reggae", "pop", "disco"), "jazz": ("blues", "classical"),
    "metal": ("rock",), "pop": ("disco", "rock", "country"), "reggae": ("hiphop", "pop"),
    "rock": ("metal", "blues", "pop"),
}
# The parts of a style that travel together when borrowed.
PARTS = {
    "rhythm": ("tempo", "swing", "kick", "snare", "hat", "hat_decay", "drums"),
    "harmony": ("scale", "progressions", "chord", "comp"),
    "bass": ("bass",),
    "timbre": ("partials", "rolloff", "attack", "decay", "octave", "lead_density"),
    "effects": ("drive", "noise"),
}
BORROW_PROBABILITY = 0.2


def _midi_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69) / 12)


class _Renderer:
    """Renders one track; notes of the same pitch and length are synthesised once and reused."""

    def __init__(self, style: Style, rng: np.random.Generator, sample_rate: int, num_samples: int):
        self.s, self.rng, self.sr, self.n = style, rng, sample_rate, num_samples
        def u(bounds: tuple[float, float]) -> float:
            return float(rng.uniform(*bounds))

        self.tempo, self.swing = u(style.tempo), u(style.swing)
        self.partials = int(rng.integers(style.partials[0], style.partials[1] + 1))
        self.rolloff, self.attack, self.decay, self.drive = u(style.rolloff), u(style.attack), u(style.decay), u(style.drive)
        self.odd_bias = float(rng.uniform(0.0, 0.6))  # hollow (clarinet-like) to full (saw-like) timbre
        self.tonic = int(rng.integers(0, 12))
        self._notes: dict[tuple[int, int, float], np.ndarray] = {}

    def step_time(self, step: int) -> float:
        """Onset of a sixteenth-note step in seconds, with swing delaying the off-beat eighths."""
        sixteenth = 60.0 / self.tempo / 4
        return step * sixteenth + (self.swing * 2 * sixteenth if step % 4 == 2 else 0.0)

    def note(self, midi: int, length: int, rolloff: float, sustain: bool) -> np.ndarray:
        key = (midi, length, rolloff)
        if key not in self._notes:
            t = np.arange(length, dtype=np.float32) / self.sr
            f0 = _midi_hz(midi)
            k = np.arange(1, self.partials + 1, dtype=np.float32)
            k = k[k * f0 < self.sr / 2.2]
            if not len(k):  # even the fundamental is too high for this sample rate: a rest
                self._notes[key] = np.zeros(length, dtype=np.float32)
                return self._notes[key]
            amp = k ** -rolloff * np.where(k % 2 == 0, 1.0 - self.odd_bias, 1.0)
            detune = 1.0 + 0.0005 * self.rng.standard_normal(len(k))  # slight inharmonicity
            wave = (amp[:, None] * np.sin(2 * np.pi * f0 * (k * detune)[:, None] * t)).sum(0)
            env = np.minimum(t / self.attack, 1.0)
            env *= np.exp(-t / (self.decay * (3.0 if sustain else 1.0)))
            env *= np.minimum((length - np.arange(length)) / (0.01 * self.sr), 1.0)  # click-free release
            self._notes[key] = (wave * env / amp.sum()).astype(np.float32)
        return self._notes[key]

    def place(self, bus: np.ndarray, onset: float, sound: np.ndarray, gain: float) -> None:
        start = int(onset * self.sr)
        if start < self.n:
            end = min(self.n, start + len(sound))
            bus[start:end] += gain * sound[: end - start]

    def drum_sounds(self) -> dict[str, np.ndarray]:
        rng, sr = self.rng, self.sr
        t = np.arange(int(0.5 * sr), dtype=np.float32) / sr
        f_hi, f_lo = rng.uniform(110, 180), rng.uniform(40, 60)
        kick = np.sin(2 * np.pi * np.cumsum(f_lo + (f_hi - f_lo) * np.exp(-t / 0.03)) / sr) * np.exp(-t / rng.uniform(0.08, 0.2))
        snare_noise = np.diff(rng.standard_normal(len(t) + 1)).astype(np.float32) * 0.5
        snare = (0.6 * snare_noise + np.sin(2 * np.pi * rng.uniform(160, 240) * t)) * np.exp(-t / rng.uniform(0.05, 0.12))
        hat_noise = np.diff(rng.standard_normal(len(t) + 1), n=1).astype(np.float32)
        hat = np.diff(np.concatenate([[0], hat_noise])) * 0.4 * np.exp(-t / rng.uniform(*self.s.hat_decay))
        return {"kick": kick.astype(np.float32), "snare": snare.astype(np.float32), "hat": hat.astype(np.float32)}

    def chord_notes(self, degree: int, shape: str, octave: int) -> list[int]:
        root = 12 * (octave + 1) + self.tonic + degree
        return [root + i for i in CHORDS[shape]]

    def render(self) -> np.ndarray:
        s, rng = self.s, self.rng
        drums, harmony, bass_bus, lead = (np.zeros(self.n, np.float32) for _ in range(4))
        bar_s = 16 * 60.0 / self.tempo / 4
        num_bars = int(np.ceil(self.n / self.sr / bar_s)) + 1
        progression = s.progressions[rng.integers(len(s.progressions))]
        shapes = [s.chord[rng.integers(len(s.chord))] for _ in progression]
        sixteenth = int(self.sr * 60.0 / self.tempo / 4)
        kit = self.drum_sounds() if s.drums[1] > 0 else {}
        lead_density = float(rng.uniform(*s.lead_density))
        lead_rolloff = self.rolloff + float(rng.uniform(-0.3, 0.3))
        lead_note = 12 * (s.octave + 2) + self.tonic
        for bar in range(num_bars):
            chord_i = bar % len(progression)
            degree, shape = progression[chord_i], shapes[chord_i]
            # Dynamics: slow swells in sustained (classical) styles, steady elsewhere.
            bar_gain = 1.0 + 0.4 * np.sin(2 * np.pi * bar / rng.uniform(4, 8)) if s.drums[1] == 0 else 1.0
            for step in range(16):
                onset = bar * bar_s + self.step_time(step)
                for name, pattern in (("kick", s.kick), ("snare", s.snare), ("hat", s.hat)):
                    if kit and rng.random() < pattern[step]:
                        self.place(drums, onset, kit[name], float(rng.uniform(0.6, 1.0)))
                if rng.random() < lead_density / 2 and step % 2 == 0:
                    lead_note += int(rng.choice((-2, -1, 0, 1, 2)))
                    pitch = self._snap(lead_note)
                    length = sixteenth * int(rng.choice((2, 4)))
                    self.place(lead, onset, self.note(pitch, length, lead_rolloff, sustain=s.drums[1] == 0), 0.5 * bar_gain)
            for step, steps_long in s.comp:
                onset = bar * bar_s + self.step_time(step)
                for pitch in self.chord_notes(degree, shape, s.octave):
                    self.place(harmony, onset, self.note(pitch, steps_long * sixteenth, self.rolloff, s.drums[1] == 0), 0.35 * bar_gain)
            self._bass(bass_bus, bar, bar_s, degree, sixteenth)
        return self._mix(drums, harmony, bass_bus, lead)

    def _snap(self, note: int) -> int:
        """Nearest pitch of the style's scale in the track's key, within two octaves of the lead range."""
        low = 12 * (self.s.octave + 1) + self.tonic
        note = int(np.clip(note, low, low + 24))
        degrees = np.array([(low + o + d) for o in (0, 12, 24) for d in self.s.scale])
        return int(degrees[np.argmin(np.abs(degrees - note))])

    def _bass(self, bus: np.ndarray, bar: int, bar_s: float, degree: int, sixteenth: int) -> None:
        root = 12 * 2 + self.tonic + degree + 12  # around 55-110 Hz
        t0 = bar * bar_s
        style = self.s.bass
        if style == "walking":
            notes = [root, root + self.s.scale[2], root + 7, root + self.s.scale[-1] - 12 + 12 * (self.rng.random() < 0.5)]
            hits = [(4 * i, n, 4) for i, n in enumerate(notes)]
        elif style == "octave":
            hits = [(2 * i, root + 12 * (i % 2), 2) for i in range(8)]
        elif style == "root_fifth":
            hits = [(0, root, 4), (4, root + 7, 4), (8, root, 4), (12, root + 7, 4)]
        elif style == "root8":
            hits = [(2 * i, root, 2) for i in range(8)]
        elif style == "sub":
            hits = [(0, root - 12, 10), (10, root - 12, 6)]
        elif style == "reggae":
            hits = [(0, root, 3), (3, root + 7, 3), (6, root + 12, 2), (10, root, 4)]
        else:  # "long": a sustained bass note per bar
            hits = [(0, root - 12, 16)]
        for step, pitch, steps_long in hits:
            sound = self.note(pitch, steps_long * sixteenth, 2.5, sustain=True)
            self.place(bus, t0 + self.step_time(step), sound, 0.7)

    def _mix(self, drums: np.ndarray, harmony: np.ndarray, bass: np.ndarray, lead: np.ndarray) -> np.ndarray:
        s, rng = self.s, self.rng
        music = harmony + lead
        if self.drive > 1.0:  # distortion on the guitars/keys, as an amp would
            music = np.tanh(self.drive * music / (np.abs(music).max() + 1e-9)) / np.tanh(self.drive)
        mix = music + float(rng.uniform(0.5, 1.0)) * bass + float(rng.uniform(*s.drums)) * 2.0 * drums
        mix /= np.abs(mix).max() + 1e-9
        # Per-track EQ: a random spectral tilt (dull to bright), so that no genre owns an average spectrum.
        spectrum = np.fft.rfft(mix)
        freqs = np.fft.rfftfreq(len(mix), 1.0 / self.sr)
        spectrum *= ((freqs + 200.0) / 1000.0) ** float(rng.uniform(-0.5, 0.4))
        mix = np.fft.irfft(spectrum, n=len(mix)).astype(np.float32)
        mix += float(rng.uniform(*s.noise)) * rng.standard_normal(len(mix)).astype(np.float32) * 4
        mix *= float(rng.uniform(0.3, 0.9)) / (np.abs(mix).max() + 1e-9)
        return mix.astype(np.float32)


def track_style(genre: str, rng: np.random.Generator) -> Style:
    """The genre's style, with each part replaced by a neighbour's with BORROW_PROBABILITY."""
    changes = {}
    for fields in PARTS.values():
        if rng.random() < BORROW_PROBABILITY:
            donor = STYLES[NEIGHBOURS[genre][rng.integers(len(NEIGHBOURS[genre]))]]
            changes.update({name: getattr(donor, name) for name in fields})
    return replace(STYLES[genre], **changes)


def render_track(genre: str, seed: int, index: int, sample_rate: int, clip_seconds: float) -> np.ndarray:
    """Render track `index` of `genre`: (samples,) float32 in [-1, 1], deterministic in its inputs."""
    rng = np.random.default_rng([seed, list(STYLES).index(genre), index])
    return _Renderer(track_style(genre, rng), rng, sample_rate, int(round(sample_rate * clip_seconds))).render()


def _write_track(args: tuple[Path, str, int, int, int, float]) -> None:
    folder, genre, index, seed, sample_rate, clip_seconds = args
    audio = render_track(genre, seed, index, sample_rate, clip_seconds)
    sf.write(folder / genre / f"{genre}.{index:05d}.wav", audio, sample_rate, subtype="PCM_16")


@dataclass
class SyntheticGenres:
    """Settings of the synthetic set; `ensure()` returns its folder, generating it on first use."""

    root: str
    tracks_per_genre: int
    seed: int
    sample_rate: int
    clip_seconds: float
    workers: int

    def settings(self) -> dict:
        return {
            "version": GENERATOR_VERSION, "genres": list(STYLES), "tracks_per_genre": self.tracks_per_genre,
            "seed": self.seed, "sample_rate": self.sample_rate, "clip_seconds": self.clip_seconds,
        }

    def folder(self) -> Path:
        digest = hashlib.sha1(json.dumps(self.settings(), sort_keys=True).encode()).hexdigest()[:12]
        return Path(self.root) / f"synthetic-{digest}"

    def tracks(self) -> TrackList:
        return list_class_folders(self.ensure(), classes=list(STYLES))

    def identity(self) -> dict:
        return {"kind": "synthetic", **self.settings()}

    def ensure(self) -> Path:
        """Generate the set into a temporary folder and rename it into place, unless it exists.
        Concurrent runs generate it once (a lock); a killed run's temporary folder is removed."""
        final = self.folder()
        if (final / "settings.json").exists():
            return final
        try:
            with build_lock(final.with_suffix(".lock"), f"the synthetic set {final}", stale=f".tmp-{final.name}-*"):
                if not (final / "settings.json").exists():
                    shutil.rmtree(final, ignore_errors=True)  # a folder without its settings is incomplete
                    self._generate(final)
        except (OSError, RuntimeError) as err:  # soundfile reports a full disk as "System error."
            reason = getattr(err, "strerror", None) or str(err).strip() or type(err).__name__
            raise DataError(f"cannot write the synthetic data set to {final} ({reason}; is the disk full?): "
                            "free space there or set paths.cache_dir to a writable folder with room") from None
        return final

    def _generate(self, final: Path) -> None:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
        try:
            for genre in STYLES:
                (tmp / genre).mkdir()
            jobs = [(tmp, g, i, self.seed, self.sample_rate, self.clip_seconds) for g in STYLES for i in range(self.tracks_per_genre)]
            log.info("Generating the synthetic genre set (%d tracks) in %s", len(jobs), final)
            workers = max(1, min(self.workers or os.cpu_count() or 1, len(jobs)))
            if workers == 1:
                for job in jobs:
                    _write_track(job)
            else:
                with ProcessPoolExecutor(workers) as pool:
                    list(pool.map(_write_track, jobs, chunksize=8))
            (tmp / "settings.json").write_text(json.dumps(self.settings(), indent=2))
            apply_umask(tmp)  # mkdtemp made it private (0700)
            tmp.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
