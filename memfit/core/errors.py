"""The one base every memfit error may derive from, so the CLI boundary can say 'this is the user's to fix' without
importing the module (and torch) that defines the error.

A subclass's message is one line: what is wrong, the file when there is one, and the fix. `exit_code` is what
`memfit` exits with (2: bad input; an interruption that saved a checkpoint may use 130)."""

from __future__ import annotations


class MemfitError(Exception):
    exit_code = 2


class ConfigError(MemfitError, ValueError):
    """A setting that cannot work - a flag, a config file's key, a fine-tune setting checked before slow work; the
    message is one line naming the setting and the fix."""
