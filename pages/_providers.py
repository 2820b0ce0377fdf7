"""The providers panel: which service runs each AI step, and whether a self-hosted ComfyUI answers."""

from __future__ import annotations

import streamlit as st

from pipeline.providers.overview import provider_overview
from pipeline.settings import Settings

STEP_LABELS = {"transcribe": "Lyrics (transcription)", "caption": "Caption", "image": "Scene image",
               "video": "Video / lip-sync", "upscale": "Upscale"}
GIB = 1024**3


def comfyui_line(comfy: dict) -> str:
    gpu = comfy.get("gpu") or "no GPU reported"
    vram = ""
    if isinstance(comfy.get("vramFreeBytes"), (int, float)) and comfy.get("vramTotalBytes"):
        vram = f" · {comfy['vramFreeBytes'] / GIB:.1f} of {comfy['vramTotalBytes'] / GIB:.1f} GiB VRAM free"
    return f"ComfyUI {comfy.get('version') or '(version unknown)'} at {comfy['url']} answers · {gpu}{vram}"


def providers_panel(settings: Settings) -> None:
    # Asked on every render: a refused connection answers at once, an unreachable host within 5 s.
    overview = provider_overview(settings)
    comfy = overview["comfyui"]
    with st.container(border=True):
        st.subheader("AI providers", anchor=False)
        st.markdown("\n".join(["| step | runs on |", "|---|---|"] + [
            f"| {STEP_LABELS[step]} | {service} |" for step, service in overview["steps"].items()]))
        if comfy.get("configured"):
            if comfy["ok"]:
                st.success(comfyui_line(comfy), icon=":material/dns:")
            else:
                st.error(comfy["error"], icon=":material/cloud_off:")
        uses_comfyui = "comfyui" in overview["steps"].values()
        for problem in (p for p in comfy["workflows"].values() if p and uses_comfyui):
            st.warning(f"Workflow refused: {problem}", icon=":material/warning:")
