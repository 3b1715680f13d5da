"""`expansion score ... --engine spark` as a spark-submit application (README: "Scoring on Spark").

spark-submit runs a Python file, not a module, so this file stands in for the `expansion`
command: its arguments are those of `expansion score` without `--engine`. The session is the one
spark-submit configured (master, executors, the packed environment); the exit code is the CLI's,
2 for bad input with one line on stderr.
"""

from __future__ import annotations

import sys

from pyspark.sql import SparkSession

from expansion_scorer.cli import main

if __name__ == "__main__":
    session = SparkSession.builder.appName("expansion-score").getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    raise SystemExit(main(["score", *sys.argv[1:], "--engine", "spark"]))
