"""Data readers, splits and batch loaders."""
