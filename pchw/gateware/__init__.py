"""Reusable Amaranth components of the pchw device, one file per block."""
