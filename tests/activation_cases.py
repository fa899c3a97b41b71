"""Activation parameters shared by the twin and the kernel tests."""

# Non-default parameters, to check that each parameter really is used.
OTHER_PARAMS = {
    "leaky_relu": dict(negative_slope=0.05),
    "elu": dict(alpha=0.7),
    "softplus": dict(beta=2.5),
    "gelu": dict(approximate=True),
    "hard_tanh": dict(min_val=-0.4, max_val=2.0),
    "soft_shrink": dict(threshold=1.2),
    "hard_shrink": dict(threshold=1.2),
    "rrelu": dict(lower=0.05, upper=0.4),
}
