"""Measuring faces: MediaPipe's landmarker and blendshapes mapped to OpenFace AUs (the embedded
default), OpenFace 2's CSVs and OpenFace in Docker, and the local extraction engine that turns a
folder into an AU table. Nothing here is imported until used: MediaPipe starts in seconds."""
