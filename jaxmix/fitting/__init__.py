"""Fitting: compiled programs per model class and the drivers that run them."""
