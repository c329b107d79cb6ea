"""The DeeperCut-style network: backbone, heads, freezing and checkpoint initialisation."""
