"""Airflow DAG for the weekly expansion run: validate, score (with triggers), monitor.

Copy this file into the DAGs folder and set the Airflow Variables `expansion_home` (the
checkout with its .venv), `expansion_data` (the exported tables) and `expansion_out` (the output
root holding history.duckdb). The as-of date is the end of the weekly interval, so a backfill
scores each past Monday from the rows dated before it; retries are safe because a re-run of a
week replaces that week. One run at a time: the output root takes one writer.
"""

from __future__ import annotations

from datetime import datetime, timedelta

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.bash import BashOperator

AS_OF = "{{ data_interval_end | ds }}"
HOME = "{{ var.value.expansion_home }}"
DATA = "{{ var.value.expansion_data }}"
OUT = "{{ var.value.expansion_out }}"
CLI = f"cd {HOME} && .venv/bin/expansion"

with DAG(
    dag_id="expansion_weekly",
    description="Score, explain and trigger expansion candidates; monitor drift and outcomes",
    schedule="0 6 * * 1",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
    tags=["expansion"],
) as dag:
    validate = BashOperator(task_id="validate", bash_command=f"{CLI} validate {DATA}")
    score = BashOperator(
        task_id="score",
        bash_command=f"{CLI} score {DATA} --as-of {AS_OF} --out {OUT} --per-csm",
    )
    monitor = BashOperator(task_id="monitor", bash_command=f"{CLI} monitor {DATA} --out {OUT}")
    validate >> score >> monitor
