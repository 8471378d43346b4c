"""The errors a user can cause. The CLI prints each as one line and exits with code 2."""


class DriftlabError(Exception):
    """Bad input: the message names the file and the key or line."""


class ConfigError(DriftlabError):
    """An unknown or mistyped config key, a wrong type, a missing config file."""


class DataError(DriftlabError):
    """A missing data file or an unreadable JSONL line."""


class CheckpointError(DriftlabError):
    """A truncated, corrupt or mismatched checkpoint."""


class StorageError(DriftlabError):
    """A write that failed (the disk is full) or a file whose content changed since it was written."""
