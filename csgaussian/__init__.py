"""csgaussian: CSGaussian compression and segmentation of 3D Gaussian Splatting, on the CPU."""

__version__ = "0.1.0"
