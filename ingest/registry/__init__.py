"""The fleet registry: cabinets, people and who looks after what, and its file formats.

``models`` holds the records; ``csv_format``, ``yaml_format`` and ``osm`` read (and the
first two write) files; ``importer`` reads a file by its extension, plans an import
against the stored registry and writes exports; ``errors`` holds :class:`RegistryError`.
See ``docs/registry.md``.
"""
