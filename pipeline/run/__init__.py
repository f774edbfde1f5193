"""Run: what each Airflow task calls, and the run's summaries."""
