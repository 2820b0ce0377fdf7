"""The peers' way to make our default video (MoviePy 2.x compositing), run by the benchmark in .venv/moviepy.

    .venv/moviepy/bin/python bench/moviepy_render.py '<json job>'

It does what MoviePy-based peers do: an ImageClip zoomed by a per-frame resize, a TextClip caption, the song
clip with fades, composited and written with libx264 through imageio-ffmpeg's binary. It prints JSON with the
seconds from building the clips to the finished file (imports are left out, as ours leaves out its own).
"""

from __future__ import annotations

import json
import os
import sys
import time


def main(job: dict) -> dict:
    from moviepy import AudioFileClip, CompositeVideoClip, ImageClip, TextClip, afx

    start = time.perf_counter()
    w, h, d = job["width"], job["height"], job["duration"]
    still = ImageClip(job["still"]).resized((w, h)).with_duration(d)  # the still fitted to the frame once
    zoom_from, zoom_to = job.get("zoom_from", 1.0), job.get("zoom_to", 1.15)
    moving = still.resized(lambda t: zoom_from + (zoom_to - zoom_from) * min(1.0, t / d)).with_position("center")
    layers = [moving]
    if job.get("caption"):
        caption = TextClip(font=job["font"], text=job["caption"], font_size=int(h * 0.045), color="white",
                           stroke_color="black", stroke_width=max(2, int(h * 0.003)), method="caption",
                           size=(int(w * 0.86), None), text_align="center", margin=(10, 10))
        layers.append(caption.with_duration(d).with_position(("center", int(h * 0.70))))
    audio = AudioFileClip(job["song"]).subclipped(job["start"], job["start"] + d)
    audio = audio.with_effects([afx.AudioFadeIn(job.get("fade_in", 0.4)), afx.AudioFadeOut(job.get("fade_out", 0.8))])
    video = CompositeVideoClip(layers, size=(w, h)).with_duration(d).with_audio(audio)
    video.write_videofile(job["out"], fps=job["fps"], codec="libx264", preset=job["preset"], audio_codec="aac",
                          audio_bitrate=job.get("audio_bitrate", "160k"), threads=os.cpu_count(),
                          ffmpeg_params=["-crf", str(job["crf"]), "-pix_fmt", "yuv420p",
                                         *(["-x264-params", job["x264_params"]] if job.get("x264_params") else [])],
                          logger=None)
    video.close()
    audio.close()
    return {"seconds": time.perf_counter() - start}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
