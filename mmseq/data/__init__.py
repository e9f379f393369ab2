"""Data loading: audio files, images, text and the datasets built from them."""
