"""Measuring models: infilling evaluation and its report, likelihood metrics, the speed benchmark."""
