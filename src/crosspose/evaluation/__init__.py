"""The paper's metrics, the scorer and the report."""
