"""Convert: turn a planned unit into Parquet rows and a WebDataset shard."""
