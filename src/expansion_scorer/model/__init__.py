"""The delivered models, below training (which fits them) and serving (which scores with them).

`PropensityModel` and `UpliftModel` answer `predict` (MLflow's pyfunc) and `explain(frame)`
(exact contributions in log-odds); the calibrator, TreeSHAP and the loaders live here too.
"""
