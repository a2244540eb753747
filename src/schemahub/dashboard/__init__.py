"""The pipeline dashboard: one self-contained HTML page built from the lake."""
