"""The Fashion-MNIST miniature of Table 1 (scripts/sweep.sh miniature); see common.gin."""
