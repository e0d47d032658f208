#!/usr/bin/env bash
# Regenerate the shipped sample media in sdk/affectlite/data/:
#   sample.mp4  640x480, 30 fps, ~9.6 s: the public-domain NASA astronaut portrait (scikit-image's
#               skimage.data.astronaut(), Eileen Collins, NASA image S94-45033) animated with a slow
#               pan/zoom, with the speech below as an AAC track
#   sample.wav  16 kHz mono 16-bit PCM speech synthesised with espeak-ng (the same speech as a WAV: the fallback of
#               `affectlite run --sample` without PyAV, and the examples' audio)
#   sample.srt  the speech as subtitles (cue times from the pauses of this espeak-ng output), picked up beside
#               sample.mp4 as the text modality
# Needs: python3 with scikit-image (and imageio, its dependency), ffmpeg (with libx264), espeak-ng.
# Usage: scripts/make_sample_media.sh [OUTPUT_DIR]   (default: sdk/affectlite/data)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/../sdk/affectlite/data}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

for tool in python3 ffmpeg espeak-ng; do
    command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool is not installed" >&2; exit 2; }
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# 1. The still: 512x512 astronaut portrait, cropped to 4:3 around the face and upscaled (zoompan
#    needs headroom to move smoothly).
python3 - "$tmp/astronaut.png" <<'PY'
import sys

import imageio.v3 as iio
from skimage import data

img = data.astronaut()            # 512x512x3 uint8, public domain (NASA)
iio.imwrite(sys.argv[1], img[0:384, 0:512])   # top 4:3 band holds the face
PY

# 2. Speech: a short, friendly announcement with pauses (so voice activity detection sees utterances).
text="Hello, and welcome! I am really happy to see you today. Everything runs on this device, and nothing leaves it."
espeak-ng -v en-us -s 165 -p 55 -a 120 -g 4 -w "$tmp/speech.wav" "$text"
dur="$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$tmp/speech.wav")"

# 3. sample.wav: 0.4 s of silence, the speech, resampled to 16 kHz mono int16, padded/cut to 9.6 s.
ffmpeg -hide_banner -loglevel error -y -i "$tmp/speech.wav" \
    -af "adelay=400|400,apad=whole_dur=9.6,atrim=end=9.6,aresample=16000" -ac 1 -ar 16000 -c:a pcm_s16le \
    -fflags +bitexact -flags:a +bitexact -map_metadata -1 "$out/sample.wav"

# 4. sample.mp4: slow zoom towards the face with a gentle sideways sway, 30 fps, 288 frames (9.6 s).
fps=30
frames=288
ffmpeg -hide_banner -loglevel error -y -loop 1 -framerate "$fps" -i "$tmp/astronaut.png" -i "$out/sample.wav" \
    -filter_complex "[0:v]scale=1280:960:flags=lanczos,zoompan=z='1.0+0.35*on/${frames}':\
x='575-575/zoom+40*sin(on/25)':y='300-300/zoom+15*sin(on/40)':d=1:s=640x480:fps=${fps},format=yuv420p[v]" \
    -map "[v]" -map 1:a -t 9.6 -c:v libx264 -preset veryslow -crf 30 -tune stillimage \
    -threads 1 -g 60 -c:a aac -b:a 40k -ac 1 -ar 16000 -movflags +faststart \
    -fflags +bitexact -flags:v +bitexact -flags:a +bitexact -map_metadata -1 "$out/sample.mp4"

# 5. sample.srt: the three sentences, timed at the pauses of the synthesised speech (+0.4 s delay above).
cat > "$out/sample.srt" <<'SRT'
1
00:00:00,400 --> 00:00:01,880
Hello, and welcome!

2
00:00:02,300 --> 00:00:04,570
I am really happy to see you today.

3
00:00:04,940 --> 00:00:08,700
Everything runs on this device, and nothing leaves it.
SRT

echo "speech: ${dur}s"
ls -l "$out/sample.mp4" "$out/sample.wav" "$out/sample.srt"
