"""fsdaxctl: what did a media error hit? Offline, read-only owner lookup for XFS."""

__version__ = "0.1.0"
