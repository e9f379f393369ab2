#!/usr/bin/env bash
# Regenerates the demo clips in mmseq/assets/clips/ with espeak-ng and sox.
# Output: 16 kHz mono 16-bit FLAC files plus transcripts.tsv (file<TAB>text).
# Synthetic speech keeps the clips small, license-free and reproducible.
set -euo pipefail

for tool in espeak-ng sox; do
    command -v "$tool" >/dev/null || { echo "make_clips.sh: $tool is required" >&2; exit 1; }
done

out="$(cd "$(dirname "$0")" && pwd)/clips"
mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# name | espeak-ng voice | words per minute | sentence
clips=(
    "clip1_en-us|en-us|160|The quick brown fox jumps over the lazy dog near the river bank."
    "clip2_en|en|150|Please remember to buy milk, eggs and bread on your way home tonight."
    "clip3_en-us-f3|en-us+f3|170|The meeting has been moved to Thursday afternoon at three o'clock."
    "clip4_en-m3|en+m3|140|It is going to rain tomorrow, so bring an umbrella to work."
    "clip5_en-gb-x-rp|en-gb-x-rp|155|She opened the window and listened to the birds singing in the garden."
)

printf 'file\ttext\n' > "$out/transcripts.tsv"
for entry in "${clips[@]}"; do
    IFS='|' read -r name voice speed text <<< "$entry"
    espeak-ng -v "$voice" -s "$speed" -w "$tmp/$name.wav" "$text"
    # espeak-ng writes 22.05 kHz; resample to the 16 kHz mono that Whisper expects.
    # -D turns off dithering, whose random noise would make every run differ.
    sox -D "$tmp/$name.wav" -r 16000 -c 1 -b 16 -C 8 "$out/$name.flac"
    printf '%s\t%s\n' "$name.flac" "$text" >> "$out/transcripts.tsv"
done
