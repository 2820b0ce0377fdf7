"""The peers' way to make our default video (MoviePy 2.x compositing), run by the benchmark in .venv/moviepy.

    .venv/moviepy/bin/python bench/moviepy_render.py '<json job>'

It does what MoviePy-based peers do: an ImageClip zoomed by a per-frame resize (one clip per shot of the edit,
each with its own window), a TextClip caption, the lyric lines as karaoke (the line in white, the sung part laid
over it in the highlight colour, one pair of TextClips per word), the song clip with fades, composited and
written with libx264 through imageio-ffmpeg's binary. It prints JSON with the
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
    shots = job.get("shots") or [{"start": 0.0, "end": d, "zoom": 1.0, "slope": 0.15 / d, "cx": 0.5, "cy": 0.5}]
    layers = [shot_clip(still, shot, w, h) for shot in shots]
    if job.get("caption"):
        caption = TextClip(font=job["font"], text=job["caption"], font_size=int(h * 0.045), color="white",
                           stroke_color="black", stroke_width=max(2, int(h * 0.003)), method="caption",
                           size=(int(w * 0.86), None), text_align="center", margin=(10, 10))
        layers.append(caption.with_duration(d).with_position(("center", int(h * 0.70))))
    for line in job.get("lyrics") or []:
        layers += karaoke_clips(TextClip, line, job["font"], int(h * 0.04), max(2, int(h * 0.003)),
                                job.get("highlight", "#FFD84D"))
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


def shot_clip(still, shot: dict, w: int, h: int):  # noqa: ANN001, ANN201 - MoviePy clips
    """One shot: the still zoomed per frame around the shot's window centre, for the shot's time."""
    def zoom(t: float) -> float:
        return shot["zoom"] + shot["slope"] * t

    def position(t: float) -> tuple[float, float]:
        return (w / 2 - shot["cx"] * w * zoom(t), h / 2 - shot["cy"] * h * zoom(t))

    return still.resized(zoom).with_position(position).with_start(shot["start"]).with_duration(
        shot["end"] - shot["start"])


def karaoke_clips(TextClip, line: dict, font: str, size: int, stroke: int, highlight: str) -> list:  # noqa: ANN001, N803
    """The line in white while it is sung, and over it the words sung so far in the highlight colour."""
    box, words = line["box"], line["words"]
    style = {"font": font, "font_size": size, "stroke_color": "black", "stroke_width": stroke, "method": "label",
             "margin": (10, 10)}
    clips = [TextClip(text=line["text"], color="white", **style).with_position((box["x"], box["y"]))
             .with_start(line["start"]).with_duration(max(0.04, line["end"] - line["start"]))]
    for i, word in enumerate(words):
        end = words[i + 1]["start"] if i + 1 < len(words) else line["end"]
        sung = " ".join(x["text"] for x in words[: i + 1])
        clips.append(TextClip(text=sung, color=highlight, **style).with_position((box["x"], box["y"]))
                     .with_start(word["start"]).with_duration(max(0.04, end - word["start"])))
    return clips


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
