"""Data layer: versioned datasets (manifests over Parquet shards), prepare ops and checks."""
