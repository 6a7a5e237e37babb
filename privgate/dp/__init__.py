"""Differentially private training: DP-SGD on Opacus' accountant and sampler
(`training`), the book-keeping per-sample clipper (`clipping`) and noise step
(`optimizer`), and the lifetime privacy budget of each dataset (`ledger`)."""
