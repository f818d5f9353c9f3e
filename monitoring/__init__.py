"""Evidently drift reports, delayed-label backtests and the retrain decision."""
