"""Inference on fitted models: denominator df, Wald/t/F tests, Type III tables, covariance-parameter
SEs, contrasts, marginal means, profile intervals, the printed summary."""
