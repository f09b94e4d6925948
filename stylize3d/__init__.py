"""Per-object 3D stylization of Gaussian scenes."""
