"""sparkzoo's documentation pages (Markdown), installed with the code: `zoo docs` says where.

The same folder is the MkDocs site's source (mkdocs.yml); this file only makes it an importable package."""
