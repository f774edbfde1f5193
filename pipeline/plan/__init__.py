"""Plan: join images with metadata, assign patient-level splits, statistics, the plan and the dry run."""
