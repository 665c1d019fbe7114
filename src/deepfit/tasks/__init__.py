"""Glue per task: data in, trained model and run directory out."""
