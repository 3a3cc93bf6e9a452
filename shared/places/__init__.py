"""Places: where a photo was taken, named offline from its GPS position (shared/places/geocode.py)."""

from shared.places.geocode import Place, PlaceFinder, PlacesUnavailable

__all__ = ["Place", "PlaceFinder", "PlacesUnavailable"]
