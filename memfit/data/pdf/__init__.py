"""PDF folder -> page texts: cheap file checks, pypdf in isolated child processes, a content-keyed cache of page
texts, and the cleaning rules for PDF artefacts (running headers, line numbers, ligatures, hyphenation)."""
