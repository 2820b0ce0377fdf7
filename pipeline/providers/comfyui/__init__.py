"""ComfyUI, the user's own GPU server, behind the step protocols: one workflow file per step."""
