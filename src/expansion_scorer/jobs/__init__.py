"""One module per command: each reads its inputs, calls the stages, writes its outputs, returns
its `Result` and owns the lines that print it (`say`). `cli.py` parses and calls.

- `train`: `expansion train` (the propensity model; `uplift` for `target: uplift`)
- `promote`: `expansion promote` (the gate between @challenger and @champion)
- `score`: `expansion score` (the weekly run) and `deliver`: `expansion deliver`
- `monitor`, `measure`, `metrics`: `expansion monitor`, `measure`, `metrics`
- `recipes`: `expansion online-retail`
"""
