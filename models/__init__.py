"""Models: EHR and CXR encoders, the fusion registry and the multi-head fusion model."""
