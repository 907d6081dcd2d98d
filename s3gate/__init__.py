"""s3gate: a streaming HTTP gateway to S3 for curl, wget and browsers."""

__version__ = "0.1.0"
