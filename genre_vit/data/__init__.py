"""From audio files to segment tensors: sources -> audio -> splits -> features -> datamodule."""
