"""The PostgreSQL backend every process of the pipeline uses (settings: ENGINE "workers.db"): Django's own, with
a health check that costs no round trip (base.DatabaseWrapper says why)."""
