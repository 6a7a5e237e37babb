"""privgate's Flower app: federated DP-SGD whose every round is summed by SecAgg+."""
