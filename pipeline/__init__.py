"""The video pipeline: pure steps that turn an artist, a template and a request into an MP4.

No web, queue or database imports here; side effects live at the edges and are passed in.
"""
