"""Footage as tutorials are really shot: registration across jitter, zooms, pans and cuts, photometric
normalisation across exposure and white-balance drift, and transitions (cross-fades, passing hands)."""
