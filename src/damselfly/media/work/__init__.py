"""What a media worker runs: probing, transcoding, images, analysis, all with PyAV.

Every step takes a `Control` (cancellation checked per frame, throttled progress) and
writes into a `Staging` directory that is renamed into place only on success.
"""
