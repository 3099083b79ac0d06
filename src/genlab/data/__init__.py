"""Data layer: IDX files (idx), dataset lookup, md5 and download (sources), images and text (images, text),
tensor transforms (transforms), the batch loader (loader) and the one entry point, load_data (datasets)."""
