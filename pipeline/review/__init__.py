"""`makeanything review`: a static site for curators that works from the file system with no network."""
