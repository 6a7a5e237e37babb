"""The table: reading it (`ingest`), gating it (`validation`, Great Expectations), the
demo's enriched Adult data (`demo_data`), and the model's public feature encoding
(`features`)."""
