"""Specification: formulas parsed once, data -> design (y, X, random terms), families, covariance
structures, the checks of the fitting arguments.  Imports nothing above it."""
