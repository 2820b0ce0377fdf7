"""Contact sheets of what the studio makes: a frame every second of one video per template and format, one
row per format, one small JPEG per template under docs/look/ (`python scripts/contact_sheets.py`)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.artists import find_artist  # noqa: E402
from pipeline.edit.frame_format import ASPECT_RATIOS  # noqa: E402
from pipeline.ffmpeg import decode_frames  # noqa: E402
from pipeline.models import RunPlan  # noqa: E402
from pipeline.run_video import run_video  # noqa: E402
from pipeline.settings import PROJECT_ROOT, Settings  # noqa: E402
from pipeline.templates import template_ids  # noqa: E402

DEMO = "1873859c-dd37-4e9a-9bac-80d3558527a9"
TILE_HEIGHT = 128  # px of each frame in the sheet (five sheets stay a few hundred KB)


def strip(video: Path, seconds: float, title: str) -> Image.Image:
    """One row: a frame every second of the video, under a title line."""
    frames = decode_frames(video, at=[t + 0.5 for t in range(int(seconds))])
    tiles = []
    for frame in frames:
        img = Image.fromarray(frame)
        tiles.append(img.resize((round(img.width * TILE_HEIGHT / img.height), TILE_HEIGHT), Image.Resampling.LANCZOS))
    w = sum(t.width for t in tiles) + 4 * (len(tiles) + 1)
    row = Image.new("RGB", (w, TILE_HEIGHT + 22), (18, 18, 20))
    ImageDraw.Draw(row).text((6, 5), title, fill=(230, 230, 230))
    x = 4
    for tile in tiles:
        row.paste(tile, (x, 20))
        x += tile.width + 4
    return row


def stack(rows: list[Image.Image]) -> Image.Image:
    canvas = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), (18, 18, 20))
    y = 0
    for row in rows:
        canvas.paste(row, (0, y))
        y += row.height
    return canvas


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "look")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--templates", nargs="*", default=None)
    parser.add_argument("--aspects", nargs="*", default=list(ASPECT_RATIOS))
    parser.add_argument("--caption", default="short")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--format", choices=["jpg", "png"], default="jpg")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(_env_file=None, data_dir=Path(tmp) / "data", clip_seconds=args.seconds,
                            output_width=360, output_height=640)
        artist = find_artist(settings, DEMO)
        for template in args.templates or template_ids():
            rows = []
            for aspect in args.aspects:
                plan = RunPlan(run_id="look", artist=artist, template_id=template, caption_length=args.caption,
                               seed=args.seed, out_dir=Path(tmp) / f"{template}-{aspect.replace(':', 'x')}",
                               aspect_ratio=aspect)
                result = run_video(plan, settings)
                edit = result.output["edit"]
                rows.append(strip(result.video_path, args.seconds,
                                  f"{aspect}  lyrics: {edit['lyricsMode']}  cuts: {edit['cuts']}"))
            out = args.out / f"{template}.{args.format}"
            stack(rows).save(out, **({"quality": 55, "optimize": True} if args.format == "jpg" else {}))
            print(out, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

