"""One module per file the loop reads and writes: each owns that file's names, its parser (values
plus gaps) and its renderer. Checks, status, analysis, authoring, report and the runtime use only
these, so two readers of one file can never disagree."""
