"""preprocess: per-view masks and language features in LangSplat's layout."""
