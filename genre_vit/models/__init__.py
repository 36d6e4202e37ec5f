"""Neural networks that map spectrogram segments to genre logits."""
