"""Ten lines from import to printed emotions: the bundled sample video + speech, or your own files."""
import sys

import affectlite
from affectlite.samples import sample_paths

video, wav = sys.argv[1:3] if len(sys.argv) > 2 else sample_paths()
opts = affectlite.PipelineOptions().replace(**{"camera.backend": "opencv", "camera.device": str(video),
                                               "audio.backend": "file", "audio.device": str(wav)})
with affectlite.EmotionPipeline(opts) as pipe:
    for r in pipe:  # results arrive on this thread until the files end (Ctrl-C to stop early)
        print(f"{r.label:>8} {r.confidence:.2f}  faces: {len(r.faces)}  voice: {r.voice.label if r.voice else '-'}")
