"""The interactive viewer (``csgaussian view``): a viser page over a decoded stream."""
