"""sf_ml: predicting French companies' collective proceedings within 18 months, tracked with MLflow."""

__version__ = "0.1.0"
