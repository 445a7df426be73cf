"""Silent data corruption: fault injection, the detector and its recompute, the events table."""
