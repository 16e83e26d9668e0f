"""Storage backends behind narrow interfaces."""
