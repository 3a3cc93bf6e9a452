"""People: faces found, described and grouped into people (issue 22)."""
