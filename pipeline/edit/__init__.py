"""The edit as a plan: segments cut on the beat grid, their framing, the face on screen and the text layers,
computed as plain data before the render executes them in one graph."""
