"""The package's console scripts: ``breadcrumbs-merge`` (:mod:`.merge`) and
``breadcrumbs-convert`` (:mod:`.convert`)."""
