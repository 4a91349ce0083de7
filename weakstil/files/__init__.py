"""Per-slide HDF5 files, one typed class per kind, each with one reader and one writer.

=================  =======================  ========================================
kind               class                    written by
=================  =======================  ========================================
``tiles``          :class:`TilesFile`        ``weakstil tile``
``features``       :class:`FeaturesFile`     ``weakstil embed`` (and ``score``'s cache)
``tumorbed``       :class:`BedFile`          ``weakstil tumorbed apply``
``tile_scores``    :class:`TileScoresFile`   ``weakstil train`` (cv/tiles), ``evaluate``
``slide_scores``   :class:`SlideScoresFile`  ``weakstil score``
=================  =======================  ========================================

``SomeFile.read(path)`` reads one (checking its kind, schema version and ``complete`` flag),
``obj.write(path)`` writes one atomically; :func:`read_any` reads whichever kind a file is.
The layouts are documented on the classes; the rules that let kinds grow are in
:mod:`weakstil.files.schema`. Only :mod:`weakstil.files.h5` opens HDF5 files.
"""

from weakstil.files.kinds import BedFile, FeaturesFile, SlideScoresFile, TileScoresFile, TilesFile
from weakstil.files.paths import feature_path, find_slide_file, slide_file
from weakstil.files.schema import KINDS, Dataset, SlideFile, SlideFileError, kind_of, legacy_kind, read_any

__all__ = ["KINDS", "BedFile", "Dataset", "FeaturesFile", "SlideFile", "SlideFileError", "SlideScoresFile",
           "TileScoresFile", "TilesFile", "feature_path", "find_slide_file", "kind_of", "legacy_kind", "read_any",
           "slide_file"]
