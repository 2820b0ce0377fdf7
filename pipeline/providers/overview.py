"""Which provider runs each step and whether a self-hosted ComfyUI answers: for /api/health, the UI and start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.errors import ProviderError
from pipeline.providers.comfyui.workflow import workflow_problems
from pipeline.providers.registry import REMOTE_FOR_STEP, choose_service
from pipeline.settings import Settings

STATUS_TIMEOUT_SECONDS = 5.0  # a health check does not wait on a busy GPU server


def step_providers(settings: Settings) -> dict[str, str]:
    """Per step its service ("local", "fal", "comfyui", ...), or why the setting cannot be used."""
    chosen: dict[str, str] = {}
    for step in REMOTE_FOR_STEP:
        try:
            chosen[step] = choose_service(step, settings)
        except ProviderError as exc:
            chosen[step] = f"unavailable: {exc.message}"
    return chosen


def comfyui_steps(settings: Settings) -> list[str]:
    return [step for step, service in step_providers(settings).items() if service == "comfyui"]


def startup_problems(settings: Settings) -> list[str]:
    """What stops the configured providers from working at all (refused before a worker takes runs)."""
    problems = [service.removeprefix("unavailable: ") for service in step_providers(settings).values()
                if service.startswith("unavailable") and "comfyui" in service]
    folder = Path(settings.comfyui_workflows_dir)
    problems += [p for p in workflow_problems(folder, comfyui_steps(settings)).values() if p]
    return problems


def comfyui_status(settings: Settings) -> dict[str, Any]:
    """Whether ComfyUI answers /system_stats: its version, the first GPU and its free VRAM."""
    from pipeline.providers.comfyui.client import ComfyUIClient

    if not settings.comfyui_url:
        return {"configured": False}
    quick = settings.model_copy(update={"provider_retries": 0, "provider_timeout_seconds": STATUS_TIMEOUT_SECONDS})
    client = ComfyUIClient(quick)
    try:
        stats = client.system_stats()
    except ProviderError as exc:
        return {"configured": True, "url": client.base, "ok": False, "error": exc.message}
    devices = [d for d in stats.get("devices") or [] if isinstance(d, dict)]
    gpu = devices[0] if devices else {}
    system = stats.get("system") if isinstance(stats.get("system"), dict) else {}
    return {"configured": True, "url": client.base, "ok": True, "version": system.get("comfyui_version"),
            "gpu": gpu.get("name"), "vramFreeBytes": gpu.get("vram_free"), "vramTotalBytes": gpu.get("vram_total")}


def provider_overview(settings: Settings) -> dict[str, Any]:
    """Everything the health page shows about providers; ComfyUI is asked only when it is configured."""
    steps = comfyui_steps(settings)
    folder = Path(settings.comfyui_workflows_dir)
    return {"steps": step_providers(settings),
            "comfyui": {**comfyui_status(settings),
                        "workflows": workflow_problems(folder, steps or ["image", "video", "upscale"])}}
