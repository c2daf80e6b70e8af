"""The command-line tools (set-up, demo, fixtures, workflows), importable as `scripts.<tool>` by the
tests; the library they share is `numina_dev` (testing/numina_dev)."""
