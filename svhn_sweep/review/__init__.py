"""The review: a sweep as pandas tables, the text report and the figures, read from its study and run folders."""
