"""In-situ observations: QC, seawater, tides."""
