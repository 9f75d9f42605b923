"""Drop-in replacements for other trackers' logging APIs: change one import line."""
