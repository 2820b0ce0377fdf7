"""The queue side: the Huey instance, the run store, trigger() and the render task."""
