#!/usr/bin/env python3
"""The flat and the tree decode of issue 20 §4 for 10^3-10^4 workers, modelled from a measured
alpha-beta link (gradcode train's start-up probe: /env/link_alpha_s, /env/link_beta_s_per_byte).

    scripts/tree_model.py ALPHA_S BETA_S_PER_BYTE MESSAGE_BYTES

Model (Hockney, one message at a time per receiving link; computation, stragglers and the
parameters rank 0 sends out are left out, the same in both):
  flat:       rank 0 receives all n coded messages:            n * (alpha + beta * M)
  tree of G:  each leader receives its G - 1 members' messages (leaders in parallel), then
              rank 0 the n / G combined ones:          (G - 1 + n / G) * (alpha + beta * M)
Bytes at rank 0: n * M flat, (n / G) * M with the tree. The best G is near sqrt(n); G must
divide n (the two-level code's groups), so the table shows G = 10, 100 and the divisor of n
nearest sqrt(n).
Prints a markdown table. Nothing here is measured but alpha, beta and M."""
import math
import sys


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    alpha, beta, m = (float(v) for v in sys.argv[1:])
    one = alpha + beta * m
    print(f"alpha = {alpha * 1e6:.2f} us, beta = {beta * 1e9:.3f} ns/byte, M = {m:,.0f} bytes:"
          f" one message {one * 1e3:.3f} ms")
    print()
    print("| workers n | flat: rank-0 MB / iter | flat: ms / iter | G | tree: rank-0 MB / iter | tree: ms / iter | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for n in (1000, 2000, 5000, 10000):
        flat_t = n * one
        best = min((g for g in range(2, n + 1) if n % g == 0), key=lambda g: abs(g - math.sqrt(n)))
        for g in sorted({10, best, 100}):
            tree_t = (g - 1 + n / g) * one
            print(f"| {n:,} | {n * m / 1e6:,.1f} | {flat_t * 1e3:,.1f} | {g} | {n / g * m / 1e6:,.1f} |"
                  f" {tree_t * 1e3:,.1f} | {flat_t / tree_t:.1f}× |")


if __name__ == "__main__":
    main()
