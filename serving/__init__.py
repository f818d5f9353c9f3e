"""The BentoML scoring API, batch scoring and campaign target lists."""
